/** Typed REST: every operation of /api/openapi.json, with the session's token and one error type. */

import { ApiError } from './errors.js'
import { OPERATIONS } from './generated/operations.js'
import type { Session } from './session.js'
import { bodyOf, errorOf, type FetchLike, normalizeBaseUrl, send } from './transport.js'
import type { OperationResult, operations } from './types.js'

export type OperationId = keyof operations

type Params<K extends OperationId> = operations[K]['parameters']
type PathOf<K extends OperationId> = Params<K> extends { path: infer P } ? P : never
type QueryOf<K extends OperationId> = Params<K> extends { query?: infer Q } ? Q : never
type BodyOf<K extends OperationId> = operations[K] extends { requestBody: { content: { 'application/json': infer B } } }
  ? B
  : operations[K] extends { requestBody: { content: { 'multipart/form-data': unknown } } }
    ? FormData
    : operations[K] extends { requestBody: { content: { 'application/octet-stream': unknown } } } ? Uint8Array : never

/** What a call takes: path parameters, query string and body, as the spec types them. */
export interface CallArgs<K extends OperationId> {
  path?: PathOf<K>
  query?: QueryOf<K>
  body?: BodyOf<K>
  signal?: AbortSignal
}

export interface ApiClientOptions {
  baseUrl: string
  /** Supplies and refreshes tokens. Without one, only operations that need no account work. */
  session?: Session
  fetch?: FetchLike
}

/** The REST API. `call(operationId, …)` reaches any operation; the groups name them. */
export class ApiClient {
  readonly baseUrl: string
  readonly session: Session | undefined
  private readonly fetchFn: FetchLike

  constructor (options: ApiClientOptions) {
    this.baseUrl = normalizeBaseUrl(options.baseUrl)
    this.session = options.session
    this.fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
  }

  /**
   * Calls one operation. A `token_expired` answer refreshes the token (once for every call that
   * saw it) and retries once. Throws `ApiError` for any failure.
   */
  async call<K extends OperationId>(operation: K, args: CallArgs<K> = {}): Promise<OperationResult<K>> {
    const info = OPERATIONS[operation]
    const url = this.url(info.path, args.path as Record<string, string> | undefined, args.query as Record<string, unknown> | undefined)
    let token = await this.tokenFor(info.auth)
    for (let attempt = 0; ; attempt++) {
      const res = await send(this.fetchFn, url, this.init(info.method, token, args))
      if (res.ok) return await bodyOf(res) as OperationResult<K>
      const error = await errorOf(res)
      if (attempt === 0 && error.code === 'token_expired' && token !== null && this.session !== undefined) {
        token = await this.session.tokenRejected(token)
        continue
      }
      throw error
    }
  }

  private async tokenFor (auth: 'required' | 'optional' | 'none'): Promise<string | null> {
    if (auth === 'none' || this.session === undefined) return null
    return await this.session.getAccessToken({ create: auth === 'required' })
  }

  private init (method: string, token: string | null, args: CallArgs<OperationId>): RequestInit {
    const headers: Record<string, string> = { Accept: 'application/json' }
    if (token !== null) headers.Authorization = `Bearer ${token}`
    let body: BodyInit | undefined
    if (typeof FormData !== 'undefined' && (args.body as unknown) instanceof FormData) {
      body = args.body
    } else if ((args.body as unknown) instanceof Uint8Array) {
      // A Yjs update for the binary document API.
      headers['Content-Type'] = 'application/octet-stream'
      body = args.body
    } else if (args.body !== undefined) {
      headers['Content-Type'] = 'application/json'
      body = JSON.stringify(args.body)
    }
    return { method, headers, body, signal: args.signal }
  }

  private url (path: string, params: Record<string, string> | undefined, query: Record<string, unknown> | undefined): string {
    const filled = path.replace(/\{(\w+)\}/g, (_, name: string) => {
      const value = params?.[name]
      if (value === undefined) throw new ApiError(0, 'missing_parameter', `path parameter ${name} is required`)
      return encodeURIComponent(String(value))
    })
    const search = new URLSearchParams()
    for (const [key, value] of Object.entries(query ?? {})) {
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') search.set(key, String(value))
    }
    const qs = search.toString()
    return `${this.baseUrl}${filled}${qs === '' ? '' : `?${qs}`}`
  }

  // --- the operations, by resource --------------------------------------------------------

  readonly auth = {
    /** A new anonymous account (the session does this on first use; call it yourself only without one). */
    anonymous: async () => await this.call('post_create_anonymous_auth'),
    refresh: async (refreshToken: string) => await this.call('post_refresh_auth', { body: { refreshToken } }),
    logout: async (refreshToken: string) => await this.call('post_sign_out_auth', { body: { refreshToken } }),
    link: async (idToken: string) => await this.call('post_link_auth', { body: { idToken } })
  }

  readonly users = {
    me: async () => await this.call('get_me_users'),
    updateMe: async (body: BodyOf<'patch_update_me_users'>) => await this.call('patch_update_me_users', { body }),
    profile: async (username: string, query?: QueryOf<'get_get_profile_users'>) =>
      await this.call('get_get_profile_users', { path: { username }, query })
  }

  readonly loops = {
    list: async (query?: QueryOf<'get_list_loops'>) => await this.call('get_list_loops', { query }),
    create: async (body: BodyOf<'post_create_loops'>) => await this.call('post_create_loops', { body }),
    get: async (id: string) => await this.call('get_get_loops', { path: { id } }),
    update: async (id: string, body: BodyOf<'patch_update_loops'>) => await this.call('patch_update_loops', { path: { id }, body }),
    delete: async (id: string) => await this.call('delete_delete_loops', { path: { id } }),
    presence: async (id: string) => await this.call('get_presence_loops', { path: { id } }),
    fork: async (id: string, body: BodyOf<'post_fork_loops'> = {}) => await this.call('post_fork_loops', { path: { id }, body }),
    share: async (id: string, body: BodyOf<'post_create_loop_sharing'> = {}) => await this.call('post_create_loop_sharing', { path: { id }, body }),
    shares: async (id: string) => await this.call('get_list_loop_sharing', { path: { id } }),
    collaborators: async (id: string) => await this.call('get_list_loop_collaborators', { path: { id } }),
    addCollaborator: async (id: string, body: BodyOf<'post_add_loop_collaborators'>) =>
      await this.call('post_add_loop_collaborators', { path: { id }, body }),
    updateCollaborator: async (id: string, username: string, body: BodyOf<'patch_update_loop_collaborators'>) =>
      await this.call('patch_update_loop_collaborators', { path: { id, username }, body }),
    removeCollaborator: async (id: string, username: string) =>
      await this.call('delete_remove_loop_collaborators', { path: { id, username } }),
    comments: async (id: string, query?: QueryOf<'get_list_loop_comments'>) => await this.call('get_list_loop_comments', { path: { id }, query }),
    comment: async (id: string, body: BodyOf<'post_create_loop_comments'>) => await this.call('post_create_loop_comments', { path: { id }, body })
  }

  readonly songs = {
    list: async (query?: QueryOf<'get_list_songs'>) => await this.call('get_list_songs', { query }),
    create: async (body: BodyOf<'post_create_songs'>) => await this.call('post_create_songs', { body }),
    /** `{ include: 'loops' }` also returns the loops the timeline uses, in one request. */
    get: async (id: string, query?: QueryOf<'get_get_songs'>) => await this.call('get_get_songs', { path: { id }, query }),
    update: async (id: string, body: BodyOf<'patch_update_songs'>) => await this.call('patch_update_songs', { path: { id }, body }),
    delete: async (id: string) => await this.call('delete_delete_songs', { path: { id } }),
    presence: async (id: string) => await this.call('get_presence_songs', { path: { id } }),
    fork: async (id: string, body: BodyOf<'post_fork_songs'> = {}) => await this.call('post_fork_songs', { path: { id }, body }),
    share: async (id: string, body: BodyOf<'post_create_song_sharing'> = {}) => await this.call('post_create_song_sharing', { path: { id }, body }),
    shares: async (id: string) => await this.call('get_list_song_sharing', { path: { id } }),
    collaborators: async (id: string) => await this.call('get_list_song_collaborators', { path: { id } }),
    addCollaborator: async (id: string, body: BodyOf<'post_add_song_collaborators'>) =>
      await this.call('post_add_song_collaborators', { path: { id }, body }),
    updateCollaborator: async (id: string, username: string, body: BodyOf<'patch_update_song_collaborators'>) =>
      await this.call('patch_update_song_collaborators', { path: { id, username }, body }),
    removeCollaborator: async (id: string, username: string) =>
      await this.call('delete_remove_song_collaborators', { path: { id, username } }),
    comments: async (id: string, query?: QueryOf<'get_list_song_comments'>) => await this.call('get_list_song_comments', { path: { id }, query }),
    comment: async (id: string, body: BodyOf<'post_create_song_comments'>) => await this.call('post_create_song_comments', { path: { id }, body })
  }

  readonly shares = {
    /** A loop or song through its share token (no account needed). */
    get: async (token: string) => await this.call('get_get_shared_sharing', { path: { token } }),
    revoke: async (token: string) => await this.call('delete_revoke_share_sharing', { path: { token } })
  }

  readonly comments = {
    edit: async (id: string, body: BodyOf<'patch_edit_comment_comments'>) => await this.call('patch_edit_comment_comments', { path: { id }, body }),
    delete: async (id: string) => await this.call('delete_delete_comment_comments', { path: { id } })
  }

  readonly samples = {
    list: async (query?: QueryOf<'get_list_samples_samples'>) => await this.call('get_list_samples_samples', { query }),
    /** Uploads a WAV or MP3 file (at most 5 MiB). */
    upload: async (file: Blob, filename: string, name?: string) => {
      const form = new FormData()
      form.append('file', file, filename)
      if (name !== undefined) form.append('name', name)
      return await this.call('post_upload_samples', { body: form })
    },
    get: async (id: string) => await this.call('get_get_sample_samples', { path: { id } }),
    delete: async (id: string) => await this.call('delete_delete_sample_samples', { path: { id } }),
    /** The audio of a locally stored sample (`/files/samples/<name>`, the last part of its `fileUrl`), as a Blob. */
    file: async (name: string): Promise<Blob> => {
      const blob: unknown = await this.call('get_serve_file_samples', { path: { name } })
      return blob as Blob
    }
  }

  readonly explore = async (query?: QueryOf<'get_explore_public_explore'>) => await this.call('get_explore_public_explore', { query })

  /** The composer's localStorage loops and songs (arrays, or objects keyed by id); idempotent per local id. */
  readonly migrate = async (body: BodyOf<'post_migrate_migration'>) => await this.call('post_migrate_migration', { body })

  readonly reports = {
    create: async (body: BodyOf<'post_create_report_moderation'>) => await this.call('post_create_report_moderation', { body })
  }

  /** Moderators only. */
  readonly admin = {
    reports: async (query?: QueryOf<'get_list_reports_moderation'>) => await this.call('get_list_reports_moderation', { query }),
    resolveReport: async (id: string, body: BodyOf<'post_resolve_report_moderation'>) =>
      await this.call('post_resolve_report_moderation', { path: { id }, body }),
    hideLoop: async (id: string, body: BodyOf<'post_hide_loop_moderation'>) => await this.call('post_hide_loop_moderation', { path: { id }, body }),
    unhideLoop: async (id: string) => await this.call('post_unhide_loop_moderation', { path: { id } }),
    hideSong: async (id: string, body: BodyOf<'post_hide_song_moderation'>) => await this.call('post_hide_song_moderation', { path: { id }, body }),
    unhideSong: async (id: string) => await this.call('post_unhide_song_moderation', { path: { id } }),
    hideComment: async (id: string, body: BodyOf<'post_hide_comment_moderation'>) =>
      await this.call('post_hide_comment_moderation', { path: { id }, body }),
    unhideComment: async (id: string) => await this.call('post_unhide_comment_moderation', { path: { id } }),
    hideUser: async (id: string, body: BodyOf<'post_hide_user_moderation'>) => await this.call('post_hide_user_moderation', { path: { id }, body }),
    unhideUser: async (id: string) => await this.call('post_unhide_user_moderation', { path: { id } })
  }

  readonly system = {
    health: async () => await this.call('get_healthz_system'),
    ready: async () => await this.call('get_readyz_system'),
    /** Prometheus text; needs `Bearer <METRICS_TOKEN>` when the server sets one (pass it with `call`). */
    metrics: async () => await this.call('get_metrics_system')
  }

  /** The public pages (HTML): for link previews or embedding checks. */
  readonly pages = {
    loop: async (token: string) => await this.call('get_loop_page_pages', { path: { token } }),
    song: async (token: string) => await this.call('get_song_page_pages', { path: { token } }),
    embed: async (token: string) => await this.call('get_embed_page_pages', { path: { token } })
  }

  // The seed's ApiClient names (docs/spec.md "Frontend Integration").
  readonly createLoop = async (data: BodyOf<'post_create_loops'>) => await this.loops.create(data)
  readonly getLoops = async (page = 1, limit = 20) => await this.loops.list({ page, limit })
  readonly getLoop = async (id: string) => await this.loops.get(id)
  readonly updateLoop = async (id: string, data: BodyOf<'patch_update_loops'>) => await this.loops.update(id, data)
  readonly deleteLoop = async (id: string) => await this.loops.delete(id)
  readonly createSong = async (data: BodyOf<'post_create_songs'>) => await this.songs.create(data)
  readonly getSongs = async (page = 1, limit = 20) => await this.songs.list({ page, limit })
  readonly getSong = async (id: string) => await this.songs.get(id)
  readonly updateSong = async (id: string, data: BodyOf<'patch_update_songs'>) => await this.songs.update(id, data)
  readonly deleteSong = async (id: string) => await this.songs.delete(id)
}
