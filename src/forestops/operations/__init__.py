"""The operations API: the one place that moves the champion or trains on request over HTTP, for
the UI's operator actions (`forestops operations-api`; see `app`)."""
