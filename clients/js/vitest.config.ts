import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The integration tests share one server (and restart it): one file at a time.
    fileParallelism: false,
    pool: 'forks'
  }
})
