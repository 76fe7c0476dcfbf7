"""Local servers that speak the push providers' documented protocols, for tests and
benchmarks: the real client code talks to them over HTTP."""
