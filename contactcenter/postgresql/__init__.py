"""Django's PostgreSQL backend with a circuit breaker on opening connections (see ``base``)."""
