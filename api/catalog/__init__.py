"""The services catalog: what providers can be listed for (methods ``services.*`` and
``admin.services.*``), cached in memory on every instance."""
