"""Front-end-neutral parts around the batching service (`hub`: HTTP worker processes in front of one service)."""
