/**
 * A frozen copy of the project for the servers to run from. `wrangler dev` rebuilds and reloads
 * the Worker whenever a source file changes, and others edit this tree while a run is going: a
 * reload in the middle of a phase would measure the reload. So the run copies the sources once,
 * at its start, and links the installed node_modules into the copy.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, symlinkSync } from "node:fs";
import path from "node:path";

/** Where the sources come from: the working tree as it is now, or the last commit. */
export type SourceKind = "worktree" | "HEAD";

/** The copy, and what it was copied from. */
export interface Snapshot {
  readonly root: string;
  readonly kind: SourceKind;
  readonly commit: string;
  /** Files that differ from the commit (working tree runs only). */
  readonly changedFiles: readonly string[];
}

/** Files in a copy, at most: a bound against copying a stray build tree. */
const FILES_MAX = 20_000;

function git(cwd: string, args: readonly string[]): string {
  return execFileSync("git", args, { cwd, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
}

/** Copies `projectRoot` into `into/src` and returns the copy's root. */
export function snapshot(projectRoot: string, into: string, kind: SourceKind): Snapshot {
  const root = path.join(into, "src");
  mkdirSync(root, { recursive: true });
  const commit = git(projectRoot, ["rev-parse", "HEAD"]).trim();
  let changedFiles: string[] = [];
  if (kind === "HEAD") {
    execFileSync("sh", ["-c", `git archive HEAD | tar -x -C "${root}"`], { cwd: projectRoot });
  } else {
    const files = git(projectRoot, ["ls-files", "-co", "--exclude-standard", "-z"]).split("\0").filter(Boolean);
    if (files.length > FILES_MAX) throw new Error(`${files.length} files to copy; more than ${FILES_MAX}`);
    for (const file of files) {
      const from = path.join(projectRoot, file);
      // A tracked file deleted in the working tree is simply absent from the copy.
      if (!existsSync(from)) continue;
      mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      copyFileSync(from, path.join(root, file));
    }
    changedFiles = git(projectRoot, ["status", "--porcelain"])
      .split("\n")
      .filter(Boolean)
      .map((line) => line.slice(3));
  }
  symlinkSync(path.join(projectRoot, "node_modules"), path.join(root, "node_modules"), "dir");
  return { root, kind, commit, changedFiles };
}
