"""The offline demos (`nlp-transfer demo`, `nlp-transfer demo --vision`) and their recipes (`recipes/`)."""
