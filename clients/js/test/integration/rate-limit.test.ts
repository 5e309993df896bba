/** A rate-limited answer as an ApiError with retryAfter (the server allows one anonymous account per IP here). */

import { beforeAll, expect, it } from 'vitest'

import { ApiError } from '../../src/index.js'
import { needServer, newClient } from '../helpers.js'

beforeAll(() => needServer())

it('429 rate_limited carries Retry-After as retryAfter', async () => {
  await newClient().api.users.me() // the one account this address may make this hour
  const err = await newClient().api.users.me().catch((e: unknown) => e)
  expect(err).toBeInstanceOf(ApiError)
  const apiError = err as ApiError
  expect(apiError.status).toBe(429)
  expect(apiError.code).toBe('rate_limited')
  expect(apiError.retryAfter).toBeGreaterThan(0)
  expect(apiError.retryAfter).toBeLessThanOrEqual(3600)
})
