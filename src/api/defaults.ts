/** API defaults, apart from the server so the CLI can show them without loading it. */
export const DEFAULT_API_PORT = 8080;
export const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;
