"""Reports for operators, read straight from the database."""
