"""Uploaded images: profile pictures, providers' working proofs and certificate, report
evidence (issue 19). See :mod:`api.uploads.service` for an upload's life and who sees
what, :mod:`api.uploads.receiver` for the HTTP side, :mod:`api.uploads.images` for what
a file may be and what it becomes."""
