"""Data: tracked-clip importers, dataset readers (processed-VOCASET layout), synthetic corpus."""
