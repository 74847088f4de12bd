import { defineProject } from "vitest/config"

export default defineProject({
  test: {
    name: "cli",
    include: ["test/**/*.test.ts"],
    // Whole runs of the CLI, awaited (never spawnSync: a blocked worker trips vitest's 60 s RPC
    // timeout). A slow 2-core machine under load can take several minutes for the longest; each
    // child is also killed after 300 s (support/Cli.ts).
    testTimeout: 600_000,
    hookTimeout: 600_000
  }
})
