"""The admin console: a web page served on the HTTP port at ``/admin/`` (static files
shipped in this package), driven over the socket port by the JavaScript client of
``clients/js`` (a copy under ``static/vendor/``, kept byte-identical by
``scripts/sync-console``)."""
