"""Push delivery: reaching users whose app is closed, once.

* ``devices.py``: the token registry (``push.register`` …) and the categories a user
  wants pushed.
* ``notice.py``: :class:`PushPolicy` / :class:`PushNotice`, what domain code attaches
  to an event it publishes.
* ``delivery.py``: the jobs that decide (``push.event``: acknowledged? which devices?
  one ``push_deliveries`` row per device) and send (``push.send``: one provider call,
  logged, with each provider's error rules).
* ``history.py``: what was pushed to a user, for support (``admin.push.history``).
* ``providers/``: thin async clients of FCM HTTP v1, APNs and Web Push.
"""
