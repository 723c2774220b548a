# Organizations, contracts, the sparse Merkle tree ledger and settlement (host side).
