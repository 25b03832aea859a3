"""warmpool runtime: a wasmtime host serving invocations from warm instance pools."""
