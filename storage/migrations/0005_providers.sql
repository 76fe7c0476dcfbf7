-- Providers: their profile and their registrations for catalog services, with the
-- price of each sub-service they offer. Money is integer paise; times are timestamptz.

-- One row per provider account (created on the first providers.profile.update or
-- registration). The original kept this on users and provider_profiles at once.
CREATE TABLE provider_profiles (
    user_id                  bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    years_of_experience      smallint NOT NULL DEFAULT 0
                                 CHECK (years_of_experience BETWEEN 0 AND 80),
    description              text,
    is_engineering_provider  boolean NOT NULL DEFAULT false,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- A provider's registration for one service (one per provider and service, reference
-- 8.5). Paid services start pending until paid; the free one is active for 365 days.
CREATE TABLE provider_services (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    service_id           bigint NOT NULL REFERENCES services (id),
    status               text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'active', 'expired', 'removed')),
    active_until         timestamptz,
    years_of_experience  smallint CHECK (years_of_experience BETWEEN 0 AND 80),
    description          text,
    state                text NOT NULL,
    city                 text NOT NULL,
    full_address         text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT provider_services_provider_service_key UNIQUE (provider_id, service_id)
);
-- The unique key indexes provider_id (its first column): myServices and ownership.
CREATE INDEX provider_services_service_idx ON provider_services (service_id);
-- providers.search and providers.featured: the active registrations of a service,
-- then by the city/state rank and experience.
CREATE INDEX provider_services_search_idx
    ON provider_services (service_id, status, lower(city), lower(state));
CREATE INDEX provider_services_active_idx ON provider_services (status, active_until);

CREATE TABLE provider_service_prices (
    provider_service_id  bigint NOT NULL REFERENCES provider_services (id) ON DELETE CASCADE,
    sub_service_id       bigint NOT NULL REFERENCES sub_services (id) ON DELETE CASCADE,
    price_paise          bigint NOT NULL CHECK (price_paise > 0),
    PRIMARY KEY (provider_service_id, sub_service_id)
);
CREATE INDEX provider_service_prices_sub_service_idx ON provider_service_prices (sub_service_id);
