"""The sidecar's HTTP API (Flask): ``app.create_app(services)`` builds it; blueprints per
concern (``operation``, ``health``; ``/notify`` comes from :mod:`subscription_handlers`)."""
