"""The FHIR R4 REST API: routes, search parsing, bundles, capability statement."""
