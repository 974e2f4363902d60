"""kprintd's SQL, shipped inside the package as kprintd.sql: migrations/ and schema/."""
