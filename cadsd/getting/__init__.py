"""Getting CAD-SD and the other benchmarks: download (Google Drive, URLs), fetch with resume and checksums, unpack archives, the manifest of a copy."""
