"""The ``dicom-fhir`` commands, one module each (``check``, ``sync``, ``convert``); the
composition root (:mod:`sidecar.wiring.cli`) assembles them with ``serve`` and the sync
queue's commands into one parser. Each module offers ``add_<name>_parser(subparsers)``, which
sets ``func(args) -> int``; a command that needs the process's services calls
``args.build()`` (the root's builder) instead of building its own."""
