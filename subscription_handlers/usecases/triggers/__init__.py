"""What makes FHIR follow the PACS by itself, beside the Patient Subscription.

Each trigger only decides *which Patients* need a sync and submits them to the queue; the
worker runs the one use case. They run in the worker process (``dicom-fhir worker``, or
``serve``'s embedded worker), one runner of each at a time across replicas (a lease in the
queue's storage), each with a durable cursor:

- ``changes:<pacs>``: Orthanc's change log (new and grown studies), or ``recent:<pacs>``:
  a QIDO poll of the recent StudyDate window, for any other DICOMweb PACS;
- ``sweep:<pacs>``: the stored ImagingStudies checked against the PACS (deleted or moved);
- ``catch-up``: Patients changed on the FHIR server since the last check (deliveries HAPI
  gave up on);
- ``resync``: every Patient re-read in full, slowly (what the steady state cannot see).
"""
