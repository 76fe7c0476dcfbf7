"""Login by SMS code: phone normalization, OTP rules and session tokens (pure logic).

The drivers in ``rtc_server`` and the stores in ``storage`` do the I/O around these.
"""
