/** One HTTP exchange: fetch, the error JSON turned into an ApiError, the body read by its type. */

import { ApiError } from './errors.js'

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>

/** The server's origin without a trailing slash (`http://localhost:3001`). */
export function normalizeBaseUrl (baseUrl: string): string {
  return baseUrl.replace(/\/+$/, '')
}

/** `fetch`, with a failure to get any answer reported as `ApiError` status 0 `network_error`. */
export async function send (fetchFn: FetchLike, url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetchFn(url, init)
  } catch (err) {
    if (init.signal?.aborted === true) throw err
    const reason = err instanceof Error ? err.message : String(err)
    throw new ApiError(0, 'network_error', `could not reach ${url}: ${reason}`)
  }
}

/** The ApiError of a non-2xx answer (the server's `{error, code, details}` when it sent one). */
export async function errorOf (res: Response): Promise<ApiError> {
  const retryAfter = parseRetryAfter(res.headers.get('Retry-After'))
  let body: unknown = null
  try {
    body = await res.json()
  } catch {
    body = null
  }
  if (isErrorBody(body)) {
    return new ApiError(res.status, body.code, body.error, Array.isArray(body.details) ? body.details : [], retryAfter)
  }
  return new ApiError(res.status, `http_${res.status}`, res.statusText || `HTTP ${res.status}`, [], retryAfter)
}

/** A successful answer's body: parsed JSON, text, or a Blob (audio files), by its type. */
export async function bodyOf (res: Response): Promise<unknown> {
  if (res.status === 204) return null
  const type = res.headers.get('Content-Type') ?? ''
  if (type.includes('json')) return await res.json()
  if (type.startsWith('text/')) return await res.text()
  return await res.blob()
}

function isErrorBody (body: unknown): body is { error: string, code: string, details?: unknown } {
  return typeof body === 'object' && body !== null &&
    typeof (body as { error?: unknown }).error === 'string' &&
    typeof (body as { code?: unknown }).code === 'string'
}

function parseRetryAfter (value: string | null): number | null {
  if (value === null) return null
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds)
  const date = Date.parse(value)
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000))
}

/** POST a JSON body, no session involved (the auth endpoints). */
export async function postJson<T> (fetchFn: FetchLike, url: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
  const res = await send(fetchFn, url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  if (!res.ok) throw await errorOf(res)
  return await res.json() as T
}
