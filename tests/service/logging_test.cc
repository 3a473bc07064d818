#include "server/common/logging.h"

#include <nlohmann/json.hpp>

#include <string>

#include "gtest/gtest.h"

namespace palmgate {
namespace {

TEST(JsonQuoteTest, PlainTextIsCopiedBetweenQuotes) {
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("rpc /palmgate.v1.PalmAuthorization/GetAuthorization"),
            "\"rpc /palmgate.v1.PalmAuthorization/GetAuthorization\"");
}

TEST(JsonQuoteTest, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(JsonQuote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonQuote("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
  EXPECT_EQ(JsonQuote(std::string("\x01x\x7f", 3)), "\"\\u0001x\\u007f\"");
}

TEST(JsonQuoteTest, KeepsValidUtf8AndEscapesTheBytesOfInvalidUtf8) {
  EXPECT_EQ(JsonQuote("刷掌"), "\"刷掌\"");
  EXPECT_EQ(JsonQuote("ok\xff\xfe"), "\"ok\\u00ff\\u00fe\"");
}

// Every field kind, including ones that need escaping, reads back as JSON.
TEST(LogFieldsTest, FieldsReadBackAsJsonInOrder) {
  LogFields fields;
  fields.Add("method", "/m").Add("code", 14).Add("latency_ms", 1.25).Add("reason", "bad \"x\"\n\xff")
      .Add("nan", 0.0 / 0.0).AddIfNotEmpty("empty", "");
  const std::string json = "{" + fields.json().substr(1) + "}";
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(doc.is_object()) << json;
  EXPECT_EQ(doc["method"], "/m");
  EXPECT_EQ(doc["code"], 14);
  EXPECT_DOUBLE_EQ(doc["latency_ms"].get<double>(), 1.25);
  EXPECT_EQ(doc["reason"], "bad \"x\"\n\u00ff");
  EXPECT_TRUE(doc["nan"].is_null());
  EXPECT_FALSE(doc.contains("empty"));
  EXPECT_EQ(fields.json().rfind(",\"method\":\"/m\",\"code\":14,\"latency_ms\":1.250,", 0), 0u) << fields.json();
}

}  // namespace
}  // namespace palmgate
