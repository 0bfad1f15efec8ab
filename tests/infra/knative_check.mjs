// Validates Knative Services (a JSON array on stdin) against Knative's API types, as
// @kubernetes-models/knative generates them from knative.dev/serving/pkg/apis/serving/v1.
// Prints one line of JSON: each document's errors ([] when valid).
import { Service } from "@kubernetes-models/knative/serving.knative.dev/v1/Service";

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const results = JSON.parse(input).map((document) => {
    try {
      new Service(document).validate();
      return [];
    } catch (error) {
      return (error.errors || [{ message: String(error) }]).map((e) => `${e.instancePath || ""} ${e.message}`);
    }
  });
  console.log(JSON.stringify(results));
});
