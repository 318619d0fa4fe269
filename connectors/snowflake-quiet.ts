/**
 * Imported before `snowflake-sdk`: the SDK bundles AWS's S3 client (for stage uploads), which on any
 * Node below 22 warns, as soon as it is loaded, about AWS's own future releases. Scoreline supports
 * Node 20, so that warning would only confuse the users of every worker and CLI command.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
