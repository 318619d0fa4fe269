'use strict';
/**
 * The worker's failure converter while the payload codec is on (src/security/codec.ts): Temporal's
 * default converter with `encodeCommonAttributes`, which moves a failure's message and stack trace into
 * a payload — which the codec then encrypts — instead of leaving them as plain text in history. Error
 * messages can quote a cell of input data (`column "f05" row 3: value …`).
 *
 * Plain JS so the SDK can `require` it unchanged from src/ under tests and from an install, and bundle
 * it into the workflow sandbox (WorkerOptions.dataConverter.failureConverterPath). Reading a failure
 * needs nothing: every SDK converter decodes encoded attributes when it finds them.
 */
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
