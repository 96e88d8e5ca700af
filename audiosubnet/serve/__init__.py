"""`asn serve`: an OpenAI-compatible speech server over the same batching service and model cache as the miner."""
