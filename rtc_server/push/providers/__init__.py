"""Thin async clients of the push providers, one module each, one interface
(:class:`rtc_server.push.providers.base.PushProvider`): FCM HTTP v1 (``fcm.py``), APNs
(``apns.py``), Web Push (``webpush.py``). Each maps its provider's answers to a
:class:`SendResult`; no aiohttp or httpx exception escapes them (``http.py``).
"""
