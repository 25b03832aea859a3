"""Repository tools: generators and consistency checks run by hand and by the tests."""
