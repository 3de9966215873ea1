"""``python -m sidecar``: the ``dicom-fhir`` command line."""

from sidecar.wiring.cli import main

raise SystemExit(main())
