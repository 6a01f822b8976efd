"""The result record (:mod:`.schema`, one typed definition) and its files (:mod:`.store`)."""

from leaderboard.records.schema import SCHEMA, SCHEMA_VERSION, Record
from leaderboard.records.store import (
    MAPS_DIR,
    MODELS_DIR,
    RECORDS_DIR,
    BadRecord,
    cell_id,
    load_records,
    parse_record,
    read_record,
    record_path,
    scan_records,
    set_aside_bad_records,
    write_record,
)

__all__ = ["MAPS_DIR", "MODELS_DIR", "RECORDS_DIR", "SCHEMA", "SCHEMA_VERSION", "BadRecord",
           "Record", "cell_id", "load_records", "parse_record", "read_record", "record_path",
           "scan_records", "set_aside_bad_records", "write_record"]
