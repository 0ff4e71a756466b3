"""FHIR JSON definitions (CodeSystem, ValueSet, StructureDefinition) of the dossier."""
