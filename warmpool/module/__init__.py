"""`warmpool module ...`: ship Wasm modules as OCI artifacts and look inside them."""
