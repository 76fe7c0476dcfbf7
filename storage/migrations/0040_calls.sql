-- Masked calls: one row per call about a booking, and the trail of its events.
-- Phone numbers and network addresses are never stored: the parties reach each other
-- through the server (signalling) and TURN.

CREATE TABLE call_sessions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id      bigint REFERENCES bookings (id) ON DELETE SET NULL,
    caller_id       bigint REFERENCES users (id) ON DELETE SET NULL,
    callee_id       bigint REFERENCES users (id) ON DELETE SET NULL,
    caller_side     text NOT NULL CHECK (caller_side IN ('customer', 'provider')),
    media           text NOT NULL CHECK (media IN ('direct', 'recorded')),
    policy          text NOT NULL CHECK (policy IN ('open', 'relay-only')),
    state           text NOT NULL DEFAULT 'ringing'
                        CHECK (state IN ('ringing', 'accepted', 'connected', 'ended')),
    end_reason      text CHECK (end_reason IN
                        ('rejected', 'cancelled', 'missed', 'hangup', 'disconnected')),
    ended_by        text CHECK (ended_by IN ('caller', 'callee', 'server')),
    -- The socket of each party in the call, "<instance>/<connection>": signals go to
    -- these only. The callee's is known once a device accepts.
    caller_device   text NOT NULL,
    callee_device   text,
    -- The instance the call was started on (the per-instance cap counts these).
    instance_id     text NOT NULL,
    ring_deadline   timestamptz NOT NULL,
    -- When a party's socket dropped (the reconnect grace runs from there); null while
    -- the socket is there.
    caller_lost_at  timestamptz,
    callee_lost_at  timestamptz,
    created_at      timestamptz NOT NULL,
    accepted_at     timestamptz,
    connected_at    timestamptz,
    ended_at        timestamptz,
    CHECK ((state = 'ended') = (end_reason IS NOT NULL))
);
-- calls.history: a party's calls (either side), of a booking or all; newest first.
CREATE INDEX call_sessions_caller_idx ON call_sessions (caller_id, id);
CREATE INDEX call_sessions_callee_idx ON call_sessions (callee_id, id);
CREATE INDEX call_sessions_booking_idx ON call_sessions (booking_id, id);
-- The per-caller rate limit counts the last minute's calls.
CREATE INDEX call_sessions_caller_created_idx ON call_sessions (caller_id, created_at);
-- Calls in progress: busy checks of both parties, admin.calls.active, the
-- per-instance cap, and the sweep of ringing deadlines and lost sockets.
CREATE INDEX call_sessions_active_caller_idx ON call_sessions (caller_id) WHERE state <> 'ended';
CREATE INDEX call_sessions_active_callee_idx ON call_sessions (callee_id) WHERE state <> 'ended';
CREATE INDEX call_sessions_active_instance_idx ON call_sessions (instance_id)
    WHERE state <> 'ended';
CREATE INDEX call_sessions_active_idx ON call_sessions (id) WHERE state <> 'ended';
CREATE INDEX call_sessions_ringing_deadline_idx ON call_sessions (ring_deadline)
    WHERE state = 'ringing';
CREATE INDEX call_sessions_lost_idx ON call_sessions (id)
    WHERE state <> 'ended' AND (caller_lost_at IS NOT NULL OR callee_lost_at IS NOT NULL);

-- Every transition of a call (and drops and resumes of a party's socket), for the
-- admins' trail (admin.calls.get) and live stream (admin.calls.watch).
CREATE TABLE call_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id     bigint NOT NULL REFERENCES call_sessions (id) ON DELETE CASCADE,
    event       text NOT NULL,
    actor       text NOT NULL CHECK (actor IN ('caller', 'callee', 'server')),
    data        jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL
);
CREATE INDEX call_events_call_idx ON call_events (call_id, id);
-- admin.calls.watch replays the last minutes of the platform's call events.
CREATE INDEX call_events_created_idx ON call_events (created_at);
