"""asn: text-to-speech and voice cloning for a Bittensor audio subnet."""

__version__ = "0.1.0"
