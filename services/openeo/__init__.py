"""openEO API 1.2 backend over the twins datacubes."""
