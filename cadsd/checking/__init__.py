"""Checking a copy: the layout, counts and every image (decodable, size, mode), and the report."""
