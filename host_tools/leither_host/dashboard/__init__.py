# `leither dashboard`: a local web page over the host tools. The server (server.py) guards every
# API call with a token and checks Host/Origin; the fleet and each node's backup progress are
# sampled in the background (sampler.py); reads go through the CLI's own functions (reads.py);
# anything that changes a node or the books runs the `leither` verb itself as a job (jobs.py).
"""The local web dashboard."""
