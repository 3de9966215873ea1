# deploy/orthanc/orthanc.json (the local stack's template) with only what differs in a
# container. Orthanc replaces ${NAME} by the environment variable NAME when it reads the
# file, so credentials and the public host come from compose, not from the image.
.Name = "dicom-fhir-sidecar demo PACS"
| .StorageDirectory = "/var/lib/orthanc/demo-db"
| .IndexDirectory = "/var/lib/orthanc/demo-db"
| .RemoteAccessAllowed = true
| .RegisteredUsers = {"${ORTHANC_USERNAME}": "${ORTHANC_PASSWORD}"}
| .DicomWeb.Host = "${ORTHANC_PUBLIC_HOST}"
