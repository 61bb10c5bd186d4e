// SHA-256 (OpenSSL's libcrypto), as lowercase hex: recorded for prepare's
// inputs, and to tell whether a resumed run trains on the same data.
#pragma once

#include <string>
#include <string_view>

namespace cllm {

std::string sha256_hex(std::string_view bytes);

}  // namespace cllm
