/**
 * CLI error kinds. A {@link UsageError} is bad input (a file, an option, a request
 * line): the CLI prints its one-line message and exits with status 2.
 */

/** Bad input: exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Exit statuses: 0 all expectations held / ran, 1 an expectation failed, 2 bad input. */
export const ExitCode = {
  OK: 0,
  FAILED: 1,
  INVALID: 2,
} as const;
