/**
 * The operations of the Music Playground REST API, generated from /api/openapi.json by openapi-typescript.
 * Do not edit: run `npm run gen:types -- --url <server>` (a test fails when this file drifts).
 */

import type { operations } from './openapi.js'

/** How each operation of /api/openapi.json is called. */
export interface OperationInfo {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE'
  readonly path: string
  /** `required`: a bearer token is needed; `optional`: sent when there is a session; `none`: never sent. */
  readonly auth: 'required' | 'optional' | 'none'
}

export const OPERATIONS = {
  delete_delete_comment_comments: { method: 'DELETE', path: '/api/comments/{id}', auth: 'required' },
  delete_delete_loops: { method: 'DELETE', path: '/api/loops/{id}', auth: 'required' },
  delete_delete_sample_samples: { method: 'DELETE', path: '/api/samples/{id}', auth: 'required' },
  delete_delete_songs: { method: 'DELETE', path: '/api/songs/{id}', auth: 'required' },
  delete_remove_loop_collaborators: { method: 'DELETE', path: '/api/loops/{id}/collaborators/{username}', auth: 'required' },
  delete_remove_song_collaborators: { method: 'DELETE', path: '/api/songs/{id}/collaborators/{username}', auth: 'required' },
  delete_revoke_share_sharing: { method: 'DELETE', path: '/api/shares/{token}', auth: 'required' },
  get_embed_page_pages: { method: 'GET', path: '/embed/{token}', auth: 'none' },
  get_explore_public_explore: { method: 'GET', path: '/api/explore', auth: 'none' },
  get_get_loops: { method: 'GET', path: '/api/loops/{id}', auth: 'optional' },
  get_get_profile_users: { method: 'GET', path: '/api/users/{username}', auth: 'optional' },
  get_get_sample_samples: { method: 'GET', path: '/api/samples/{id}', auth: 'required' },
  get_get_shared_sharing: { method: 'GET', path: '/api/shared/{token}', auth: 'optional' },
  get_get_songs: { method: 'GET', path: '/api/songs/{id}', auth: 'optional' },
  get_healthz_system: { method: 'GET', path: '/healthz', auth: 'none' },
  get_list_loop_collaborators: { method: 'GET', path: '/api/loops/{id}/collaborators', auth: 'required' },
  get_list_loop_comments: { method: 'GET', path: '/api/loops/{id}/comments', auth: 'optional' },
  get_list_loop_sharing: { method: 'GET', path: '/api/loops/{id}/shares', auth: 'required' },
  get_list_loops: { method: 'GET', path: '/api/loops', auth: 'required' },
  get_list_reports_moderation: { method: 'GET', path: '/api/admin/reports', auth: 'required' },
  get_list_samples_samples: { method: 'GET', path: '/api/samples', auth: 'required' },
  get_list_song_collaborators: { method: 'GET', path: '/api/songs/{id}/collaborators', auth: 'required' },
  get_list_song_comments: { method: 'GET', path: '/api/songs/{id}/comments', auth: 'optional' },
  get_list_song_sharing: { method: 'GET', path: '/api/songs/{id}/shares', auth: 'required' },
  get_list_songs: { method: 'GET', path: '/api/songs', auth: 'required' },
  get_loop_page_pages: { method: 'GET', path: '/loop/{token}', auth: 'none' },
  get_me_users: { method: 'GET', path: '/api/users/me', auth: 'required' },
  get_metrics_system: { method: 'GET', path: '/metrics', auth: 'none' },
  get_presence_loops: { method: 'GET', path: '/api/loops/{id}/presence', auth: 'optional' },
  get_presence_songs: { method: 'GET', path: '/api/songs/{id}/presence', auth: 'optional' },
  get_readyz_system: { method: 'GET', path: '/readyz', auth: 'none' },
  get_serve_file_samples: { method: 'GET', path: '/files/samples/{name}', auth: 'none' },
  get_song_page_pages: { method: 'GET', path: '/song/{token}', auth: 'none' },
  patch_edit_comment_comments: { method: 'PATCH', path: '/api/comments/{id}', auth: 'required' },
  patch_update_loop_collaborators: { method: 'PATCH', path: '/api/loops/{id}/collaborators/{username}', auth: 'required' },
  patch_update_loops: { method: 'PATCH', path: '/api/loops/{id}', auth: 'required' },
  patch_update_me_users: { method: 'PATCH', path: '/api/users/me', auth: 'required' },
  patch_update_song_collaborators: { method: 'PATCH', path: '/api/songs/{id}/collaborators/{username}', auth: 'required' },
  patch_update_songs: { method: 'PATCH', path: '/api/songs/{id}', auth: 'required' },
  post_add_loop_collaborators: { method: 'POST', path: '/api/loops/{id}/collaborators', auth: 'required' },
  post_add_song_collaborators: { method: 'POST', path: '/api/songs/{id}/collaborators', auth: 'required' },
  post_create_anonymous_auth: { method: 'POST', path: '/api/auth/anonymous', auth: 'none' },
  post_create_loop_comments: { method: 'POST', path: '/api/loops/{id}/comments', auth: 'required' },
  post_create_loop_sharing: { method: 'POST', path: '/api/loops/{id}/share', auth: 'required' },
  post_create_loops: { method: 'POST', path: '/api/loops', auth: 'required' },
  post_create_report_moderation: { method: 'POST', path: '/api/reports', auth: 'required' },
  post_create_song_comments: { method: 'POST', path: '/api/songs/{id}/comments', auth: 'required' },
  post_create_song_sharing: { method: 'POST', path: '/api/songs/{id}/share', auth: 'required' },
  post_create_songs: { method: 'POST', path: '/api/songs', auth: 'required' },
  post_fork_loops: { method: 'POST', path: '/api/loops/{id}/fork', auth: 'required' },
  post_fork_songs: { method: 'POST', path: '/api/songs/{id}/fork', auth: 'required' },
  post_hide_comment_moderation: { method: 'POST', path: '/api/admin/comments/{id}/hide', auth: 'required' },
  post_hide_loop_moderation: { method: 'POST', path: '/api/admin/loops/{id}/hide', auth: 'required' },
  post_hide_song_moderation: { method: 'POST', path: '/api/admin/songs/{id}/hide', auth: 'required' },
  post_hide_user_moderation: { method: 'POST', path: '/api/admin/users/{id}/hide', auth: 'required' },
  post_link_auth: { method: 'POST', path: '/api/auth/link', auth: 'required' },
  post_migrate_migration: { method: 'POST', path: '/api/migrate', auth: 'required' },
  post_refresh_auth: { method: 'POST', path: '/api/auth/refresh', auth: 'none' },
  post_resolve_report_moderation: { method: 'POST', path: '/api/admin/reports/{id}/resolve', auth: 'required' },
  post_sign_out_auth: { method: 'POST', path: '/api/auth/logout', auth: 'none' },
  post_unhide_comment_moderation: { method: 'POST', path: '/api/admin/comments/{id}/unhide', auth: 'required' },
  post_unhide_loop_moderation: { method: 'POST', path: '/api/admin/loops/{id}/unhide', auth: 'required' },
  post_unhide_song_moderation: { method: 'POST', path: '/api/admin/songs/{id}/unhide', auth: 'required' },
  post_unhide_user_moderation: { method: 'POST', path: '/api/admin/users/{id}/unhide', auth: 'required' },
  post_upload_samples: { method: 'POST', path: '/api/samples/upload', auth: 'required' },
} as const satisfies { readonly [K in keyof operations]: OperationInfo }
