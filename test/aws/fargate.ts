/** The Fargate simulator (test/aws/fargate/): kept at this path for the tests that import it. */
export * from "./fargate/index.js";
