"""NCJRS harvester: parse, normalize, validate, de-duplicate and store NCJRS records."""
