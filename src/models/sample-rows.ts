/** Rows `models register --sample-from` reads and scores by default; its own module so the CLI can name it in --help without loading the contract check (Arrow, DuckDB, the warehouse SDKs). */
export const DEFAULT_SAMPLE_ROWS = 1000;
