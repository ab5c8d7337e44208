"""A results tree as tables and figures (`qsmbench plot`): scores, bootstrap statistics, aggregates, drawing."""
