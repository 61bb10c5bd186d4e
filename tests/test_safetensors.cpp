// safetensors: what cllm writes it reads back bitwise; BF16 and F16 widen
// exactly; every malformed header is refused with a line naming the tensor.
#include <gtest/gtest.h>

#include <cstdint>
#include <bit>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

#include <filesystem>

#include "cllm/base/read_file.h"
#include "cllm/io/safetensors.h"

namespace cllm {
namespace {

// A file of the given JSON header and data bytes, as the format lays it out.
std::string file_of(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(static_cast<std::uint64_t>(header.size()) >> (8 * i));
  return out + header + data;
}

std::string error_of(const std::string& bytes) {
  try {
    SafetensorsFile file(bytes);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Safetensors, WhatItWritesItReadsBackBitwiseWithNamesShapesAndMetadata) {
  const std::vector<float> a = {1.5f, -0.0f, 3.25e-38f, 7.0f, -2.0f, 1e30f};
  const std::vector<float> b = {42.0f};
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("cllm-test-" + std::to_string(getpid()) + ".safetensors");
  SafetensorsWriter writer(path, {{"h.0.attn.c_attn.weight", {2, 3}}, {"wpe.weight", {1}}, {"empty", {0, 4}}},
                           {{"format", "pt"}});
  EXPECT_THROW(writer.write(b), std::logic_error) << "the first tensor has 6 values";
  writer.write(a);
  EXPECT_THROW(writer.commit(), std::logic_error) << "two tensors are unwritten";
  writer.write(b);
  writer.write({});
  writer.commit();
  const std::string bytes = read_file(path);
  std::filesystem::remove(path);
  const std::size_t header = bytes.size() - 4 * (a.size() + b.size());
  EXPECT_EQ(header % 8, 0u) << "data must start 8-byte aligned";

  const SafetensorsFile file(bytes);
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "h.0.attn.c_attn.weight");
  EXPECT_EQ(file.tensors()[0].shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(file.metadata().at("format"), "pt");
  const std::vector<float> got = file.to_floats(*file.find("h.0.attn.c_attn.weight"));
  ASSERT_EQ(got.size(), a.size());
  EXPECT_EQ(std::memcmp(got.data(), a.data(), 4 * a.size()), 0);
  EXPECT_EQ(file.to_floats(*file.find("wpe.weight")), b);
  EXPECT_TRUE(file.to_floats(*file.find("empty")).empty());
  EXPECT_EQ(file.find("nope"), nullptr);
}

TEST(Safetensors, Bf16AndF16WidenExactly) {
  // bf16: 1.0, -2.5, the largest finite; f16: 1.0, -2.0, 65504, the smallest
  // subnormal (2^-24), +inf.
  const std::uint16_t bf16[] = {0x3F80, 0xC020, 0x7F7F};
  const std::uint16_t f16[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00};
  std::string data(reinterpret_cast<const char*>(bf16), sizeof bf16);
  data.append(reinterpret_cast<const char*>(f16), sizeof f16);
  const SafetensorsFile file(file_of(
      R"({"b":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},)"
      R"("f":{"dtype":"F16","shape":[5],"data_offsets":[6,16]}})", data));
  const std::vector<float> b = file.to_floats(*file.find("b"));
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], -2.5f);
  EXPECT_EQ(b[2], std::bit_cast<float>(0x7F7F0000u));
  const std::vector<float> f = file.to_floats(*file.find("f"));
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], 65504.0f);
  EXPECT_EQ(f[3], 0x1p-24f);
  EXPECT_EQ(f[4], std::numeric_limits<float>::infinity());
}

TEST(Safetensors, RefusesEveryMalformedHeaderNamingTheTensor) {
  const std::string four(4, '\0');
  const std::string t = R"("t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  struct Case {
    std::string bytes, message;
  };
  std::string huge(8, '\xff');
  const std::vector<Case> cases = {
      {"abc", "no 8-byte header length"},
      {huge, "runs past the file"},
      {file_of("[1,2]", ""), "does not start with '{'"},
      {file_of("{\"t\":", ""), "header is not JSON"},
      {file_of("{" + t + "," + t + "}", four + four), "tensor 't' appears twice"},
      {file_of(R"({"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", four + four), "tensor 't': dtype I64 is not read"},
      {file_of(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four), "tensor 't': shape [2] is not its 4 bytes"},
      {file_of(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four), "tensor 't': shape holds"},
      {file_of(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]}})", four), "tensor 't': shape overflows"},
      {file_of(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", four), "tensor 't': data_offsets [0, 8] are not within the 4"},
      {file_of(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", four), "tensor 't': data_offsets [4, 0]"},
      {file_of(R"({"t":{"dtype":"F32","shape":[1]}})", four), "tensor 't' lacks"},
      {file_of(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", four), "tensor 't' has an unknown field 'x'"},
      {file_of(R"({"t":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}})", four), "nests deeper"},
      {file_of(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"u":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", four + four),
       "starts at byte 0, not 4 (it overlaps another)"},
      {file_of(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", four + four), "tensor 't' starts at byte 4, not 0 (bytes between tensors)"},
      {file_of("{" + t + "}", four + four), "4 bytes after the last tensor belong to none"},
      {file_of(R"({"__metadata__":{"a":1}})", ""), "__metadata__ 'a' is not a string"},
      {file_of(R"({"t":7})", ""), "tensor 't' is not an object"},
  };
  for (const Case& c : cases) {
    const std::string got = error_of(c.bytes);
    EXPECT_NE(got.find(c.message), std::string::npos) << "expected '" << c.message << "', got '" << got << "'";
    EXPECT_EQ(got.find('\n'), std::string::npos) << got;
  }
}

TEST(Safetensors, HeaderRefusesARepeatedName) {
  EXPECT_THROW(safetensors_header({{"a", {3}}, {"a", {3}}}, {}), std::invalid_argument);
  EXPECT_THROW(safetensors_header({{"__metadata__", {3}}}, {{"format", "pt"}}), std::invalid_argument);
}

}  // namespace
}  // namespace cllm
