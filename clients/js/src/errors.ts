/** The kit's errors: one for the REST API, and the live documents' own. */

/** Any failed REST call: the server's error JSON (`{error, code, details}`), or a network failure
 * (`status` 0, `code` `network_error`). */
export class ApiError extends Error {
  override readonly name = 'ApiError'
  /** HTTP status; 0 when no answer arrived. */
  readonly status: number
  /** Machine-readable code, e.g. `validation_error`, `token_expired`, `not_found`, `rate_limited`. */
  readonly code: string
  /** The server's human-readable message. */
  readonly error: string
  /** Field errors and other particulars (empty when there are none). */
  readonly details: unknown[]
  /** Seconds to wait before trying again (from `Retry-After`), or null. */
  readonly retryAfter: number | null

  constructor (status: number, code: string, error: string, details: unknown[] = [], retryAfter: number | null = null) {
    super(`${status} ${code}: ${error}`)
    this.status = status
    this.code = code
    this.error = error
    this.details = details
    this.retryAfter = retryAfter
  }
}

/** A mutator was called on a live document the caller may only read (`read_only`: role
 * `viewer`), before the server said the role (`not_ready`), or after it closed (`closed`). */
export class ReadOnlyError extends Error {
  override readonly name = 'ReadOnlyError'
  readonly code: 'read_only' | 'not_ready' | 'closed'
  constructor (code: 'read_only' | 'not_ready' | 'closed', message: string) {
    super(message)
    this.code = code
  }
}

/** A mutator was given a value the document schema does not allow (nothing was written). */
export class ContentError extends Error {
  override readonly name = 'ContentError'
}

/** A live document could not be opened or was closed for good (`whenSynced()` rejects with it). */
export class LiveDocumentClosed extends Error {
  override readonly name = 'LiveDocumentClosed'
  /** `not_found`, `unauthorized`, `access_revoked`, `document_deleted`, `too_many_refused_updates`, `closed`. */
  readonly reason: string
  constructor (reason: string, message: string) {
    super(message)
    this.reason = reason
  }
}
