// dixie_gpu_check: the CUDA backend checked against the reference vectors and against the CPU backend, and
// benchmarked. Built and run by bench/gpu.sh on a machine with an NVIDIA GPU; needs no Node.js.
//
//   dixie_gpu_check <section> [--small] [--fixtures DIR]
//   sections: reference  the gpt2-tiny reference vectors (test/fixtures/gpt2-tiny) on CUDA, float32 and bf16
//             cpu        CUDA against the CPU backend on a random model of GPT-2 124M's shape
//             decode     KV-cached decoding against full forward passes and against the CPU
//             graphs     decode steps as CUDA graphs (DIXIE_CUDA_GRAPHS=1) against the same steps run eagerly
//             attention  the bf16 attention kernels on Hopper (wgmma and TMA, DIXIE_HOPPER_ATTENTION=1) against
//                        the mma.sync ones and a float64 reference, forward and backward; their times at 8 x 1024
//             sampler    the GPU sampler against the CPU sampler
//             lora       a LoRA adapter's training (with dropout too) and decoding against the CPU backend's
//             adapters   adapters bound to slots (kv_add_adapter): a batch mixing three of them and the base
//                        against each slot decoded alone and against the CPU backend, for each weight type;
//                        rebinding, removing and refusals
//             bench      training (also with the wgmma attention, where there is one) and decoding throughput,
//                        sampling time (a markdown table on stdout)
//             bench-train  only training at 8 x 1024 (to compare GEMM paths)
//             profile    one bf16 training step at 8 x 1024 between cudaProfilerStart/Stop, for
//                        `ncu --profile-from-start off` (bench/gpu.sh sums its kernels by name)
//   --small: cpu, decode, graphs, sampler, lora, adapters and attention on a 2-layer model of head size 64 instead of
//            124M (seconds, not minutes)
//
// Each check prints one line, PASS or FAIL with the measured numbers; the exit status is the number of
// failures. Set DIXIE_CUBLAS=0 to run everything on dixie's own GEMM kernels instead of cuBLASLt.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_profiler_api.h>

#include "core/adapter_table.h"
#include "core/backend.h"
#include "core/dtype.h"
#include "cuda/attention.cuh"
#include "cuda/cuda_backend.cuh"

using namespace dixie;

namespace {

// ---- reporting ----

int g_failures = 0;

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

void report(bool ok, const std::string& name, const std::string& detail) {
  if (!ok) ++g_failures;
  std::printf("%s  %-58s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
  std::fflush(stdout);
}

// Switches that backends read from the environment when they are made, on ("1") or off ("0") while this object
// lives, as they were after.
class Switches {
 public:
  Switches(const std::vector<std::string>& names, bool on) {
    for (const std::string& name : names) {
      const char* was = std::getenv(name.c_str());
      saved_.push_back({name, was ? std::optional<std::string>(was) : std::nullopt});
      setenv(name.c_str(), on ? "1" : "0", 1);
    }
  }
  ~Switches() {
    for (const auto& [name, was] : saved_) {
      if (was) setenv(name.c_str(), was->c_str(), 1);
      else unsetenv(name.c_str());
    }
  }
  Switches(const Switches&) = delete;
  Switches& operator=(const Switches&) = delete;

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// Runs one check; an exception is its failure (and the next check still runs).
void check(const std::string& name, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    report(false, name, std::string("threw: ") + e.what());
  }
}

double max_abs(const float* a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i])));
  return m;
}

// The largest |a - b|, where a NaN on either side is an infinite difference (std::max would pass it over, and a
// kernel that writes NaNs would agree with everything).
double max_abs_diff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) {
    if (a[i] == b[i]) continue;  // equal infinities agree
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    m = std::isnan(d) ? HUGE_VAL : std::max(m, d);
  }
  return m;
}

// sqrt(d / r) from the sums of squares of a difference (d) and of its reference (r); the absolute norm where r is 0
double rel_from_squares(double d, double r) { return r > 0 ? std::sqrt(d / r) : std::sqrt(d); }

// ||a - b|| / ||b||
double rel_l2(const float* a, const float* b, size_t n) {
  double d = 0, r = 0;
  for (size_t i = 0; i < n; ++i) {
    d += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    r += static_cast<double>(b[i]) * b[i];
  }
  return rel_from_squares(d, r);
}

// ---- a minimal safetensors reader (the fixture files) ----

struct Json {
  enum Kind { Null, Number, String, Array, Object } kind = Null;
  double number = 0;
  std::string str;
  std::vector<Json> items;
  std::map<std::string, Json> fields;
};

struct JsonParser {
  const std::string& s;
  size_t i = 0;
  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  [[noreturn]] void fail(const char* what) { throw std::runtime_error(std::string("safetensors header: ") + what + " at " + std::to_string(i)); }
  std::string string() {
    if (s[i] != '"') fail("expected a string");
    std::string out;
    for (++i; i < s.size() && s[i] != '"'; ++i) {
      if (s[i] == '\\') ++i;
      out += s[i];
    }
    ++i;
    return out;
  }
  // The comma-separated elements of an object or array after its opening bracket, up to `close`.
  template <typename F>
  void elements(char close, F element) {
    ++i;
    for (ws(); s[i] != close; ws()) {
      element();
      ws();
      if (s[i] == ',') ++i;
    }
    ++i;
  }
  Json value() {
    ws();
    Json v;
    if (i >= s.size()) fail("unexpected end");
    if (s[i] == '{') {
      v.kind = Json::Object;
      elements('}', [&] {
        const std::string key = string();
        ws();
        if (s[i++] != ':') fail("expected ':'");
        v.fields[key] = value();
      });
    } else if (s[i] == '[') {
      v.kind = Json::Array;
      elements(']', [&] { v.items.push_back(value()); });
    } else if (s[i] == '"') {
      v.kind = Json::String;
      v.str = string();
    } else {
      v.kind = Json::Number;
      size_t end = i;
      while (end < s.size() && (std::isdigit(static_cast<unsigned char>(s[end])) || std::strchr("+-.eE", s[end]))) ++end;
      if (end == i) fail("unexpected character");
      v.number = std::stod(s.substr(i, end - i));
      i = end;
    }
    return v;
  }
};

struct Tensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<char> bytes;
  size_t numel() const {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  }
  std::vector<float> f32() const {
    std::vector<float> out(numel());
    if (dtype == "F32") std::memcpy(out.data(), bytes.data(), out.size() * 4);
    else if (dtype == "F16" || dtype == "BF16") {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(bytes.data());
      for (size_t i = 0; i < out.size(); ++i) out[i] = dtype == "F16" ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
    } else throw std::runtime_error("tensor dtype " + dtype + " is not a float type");
    return out;
  }
  std::vector<int32_t> i32() const {
    if (dtype != "I32") throw std::runtime_error("tensor dtype " + dtype + " is not I32");
    std::vector<int32_t> out(numel());
    std::memcpy(out.data(), bytes.data(), out.size() * 4);
    return out;
  }
};

std::map<std::string, Tensor> read_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  uint64_t header_len = 0;
  f.read(reinterpret_cast<char*>(&header_len), 8);
  std::string header(header_len, '\0');
  f.read(&header[0], static_cast<std::streamsize>(header_len));
  JsonParser parser{header};
  const Json root = parser.value();
  std::map<std::string, Tensor> out;
  for (const auto& [name, entry] : root.fields) {
    if (name == "__metadata__") continue;
    Tensor t;
    t.dtype = entry.fields.at("dtype").str;
    for (const Json& d : entry.fields.at("shape").items) t.shape.push_back(static_cast<int64_t>(d.number));
    const auto& off = entry.fields.at("data_offsets").items;
    const uint64_t begin = static_cast<uint64_t>(off[0].number), end = static_cast<uint64_t>(off[1].number);
    t.bytes.resize(end - begin);
    f.seekg(static_cast<std::streamoff>(8 + header_len + begin));
    f.read(t.bytes.data(), static_cast<std::streamsize>(end - begin));
    if (!f) throw std::runtime_error(path + ": tensor " + name + " is truncated");
    out[name] = std::move(t);
  }
  return out;
}

// ---- models ----

GPT2Config config_from_hf(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  JsonParser parser{text};
  const Json j = parser.value();
  auto get = [&](const char* a, const char* b) {
    auto it = j.fields.find(a);
    if (it == j.fields.end()) it = j.fields.find(b);
    if (it == j.fields.end()) throw std::runtime_error(path + ": no " + a);
    return static_cast<int>(it->second.number);
  };
  GPT2Config c;
  c.n_layer = get("n_layer", "num_hidden_layers");
  c.n_head = get("n_head", "num_attention_heads");
  c.n_embd = get("n_embd", "hidden_size");
  c.n_ctx = get("n_positions", "n_ctx");
  c.vocab_size = get("vocab_size", "vocab_size");
  return c;
}

GPT2Config gpt2_124m() {
  GPT2Config c;
  c.n_layer = 12;
  c.n_head = 12;
  c.n_embd = 768;
  c.n_ctx = 1024;
  c.vocab_size = 50257;
  return c;
}

GPT2Config gpt2_1558m() {
  GPT2Config c = gpt2_124m();
  c.n_layer = 48;
  c.n_head = 25;
  c.n_embd = 1600;
  return c;
}

// The model and sizes of the cpu, decode and sampler sections.
struct Shape {
  GPT2Config config;
  int B, T;                  // the training batch of the cpu section
  std::vector<int> prefill;  // decode: new tokens of slots 0, 1, 2 in the first call (with 124M, more rows than
                             // a decoding chunk holds, so that a slot's prefill spans two chunks)
  int sampler_rows;
};

Shape shape_for(bool small) {
  if (!small) return Shape{gpt2_124m(), 4, 256, {37, 1, 1000}, 256};
  GPT2Config c;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 128;
  c.n_ctx = 128;
  c.vocab_size = 1000;
  return Shape{c, 2, 80, {37, 1, 90}, 64};
}

struct Rng {  // splitmix64, with Box-Muller normals
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    const double u1 = std::max(uniform(), 1e-300), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

// GPT-2's initialisation, with small random biases and LayerNorm parameters so that every path is exercised.
// `uniform`: the same spreads drawn uniformly, for timing alone, where 1558M's 1.56 billion normals would take a
// minute of a short GPU loan.
std::vector<float> random_params(const ModelSpec& spec, uint64_t seed, bool uniform = false) {
  std::vector<float> p(spec.num_params(), 0.0f);
  Rng rng{seed};
  for (const ParamTensor& t : spec.tensors()) {
    const bool ln_weight = t.kind == LN1_W || t.kind == LN2_W || t.kind == LNF_W;
    for (size_t i = 0; i < t.numel; ++i) {
      const double z = uniform ? std::sqrt(3.0) * (2.0 * rng.uniform() - 1.0) : rng.normal();  // mean 0, variance 1
      p[t.offset + i] = static_cast<float>(ln_weight ? 1.0 + 0.1 * z : (t.is_matrix ? 0.02 : 0.01) * z);
    }
  }
  return p;
}

std::vector<int32_t> random_tokens(size_t n, int vocab, uint64_t seed) {
  Rng rng{seed};
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(vocab));
  return t;
}

// dropout: the adapter's (lora_dropout), its masks seeded by kDropoutSeed.
constexpr uint64_t kDropoutSeed = 17;

// The options both backends' models are made with here.
BackendOptions model_options(int B, int T, bool trainable, const LoraShape& lora, float dropout, DType weights) {
  BackendOptions o;
  o.weight_dtype = weights;
  o.lora_dropout = dropout;
  o.lora_dropout_seed = kDropoutSeed;
  o.max_batch = B;
  o.max_seq = T;
  o.trainable = trainable;
  o.lora = lora;
  return o;
}

std::unique_ptr<Backend> cuda_model(const GPT2Config& c, const std::vector<float>& params, int B, int T, bool bf16,
                                    bool recompute = false, bool trainable = true, const LoraShape& lora = {},
                                    float dropout = 0.0f, DType weights = DType::F32) {
  BackendOptions o = model_options(B, T, trainable, lora, dropout, weights);
  o.mixed_bf16 = bf16;
  o.recompute = recompute;
  auto be = make_cuda_backend(c, o);
  be->write_params(0, params.data(), params.size(), DType::F32);
  return be;
}

// The benchmarks' decoding model: sequences of up to 64 tokens, bf16 activations or not, weights stored as `weights`.
std::unique_ptr<Backend> decode_bench_model(const GPT2Config& c, const std::vector<float>& params, bool bf16, DType weights) {
  return cuda_model(c, params, 1, 64, bf16, false, false, {}, 0.0f, weights);
}

std::unique_ptr<Backend> cpu_model(const GPT2Config& c, const std::vector<float>& params, int B, int T, bool trainable = true,
                                   const LoraShape& lora = {}, float dropout = 0.0f, DType weights = DType::F32) {
  const BackendOptions o = model_options(B, T, trainable, lora, dropout, weights);
  auto be = make_cpu_backend(c, o);
  be->write_params(0, params.data(), params.size(), DType::F32);
  return be;
}

StepOptions adamw(float lr) {
  StepOptions s;
  s.kind = OptimizerKind::AdamW;
  s.lr = lr;
  s.beta1 = 0.9f;
  s.beta2 = 0.999f;
  s.eps = 1e-8f;
  s.weight_decay = 0.0f;
  return s;
}

// Every parameter, or the gradients in the same layout (those of the parameters that train; zero before them).
std::vector<float> read_all(const Backend& be, bool grads) {
  std::vector<float> out(be.spec().num_params());
  const size_t first = grads ? be.spec().trainable_begin() : 0;
  if (grads) be.read_grads(first, out.data() + first, out.size() - first);
  else be.read_params(0, out.data(), out.size());
  return out;
}

// ---- section: the reference vectors ----

void section_reference(const std::string& dir) {
  const GPT2Config c = config_from_hf(dir + "/config.json");
  const ModelSpec spec(c);
  auto weights = read_safetensors(dir + "/model.safetensors");
  auto ex = read_safetensors(dir + "/expected.safetensors");
  std::vector<float> params(spec.num_params(), 0.0f);
  for (const ParamTensor& t : spec.tensors()) {
    auto it = weights.find(t.name);
    if (it == weights.end()) it = weights.find("transformer." + t.name);
    if (it == weights.end()) throw std::runtime_error("model.safetensors: no " + t.name);
    const std::vector<float> v = it->second.f32();
    std::copy(v.begin(), v.end(), params.begin() + static_cast<std::ptrdiff_t>(t.offset));
  }
  const int B = static_cast<int>(ex.at("inputs").shape[0]), T = static_cast<int>(ex.at("inputs").shape[1]);
  const std::vector<int32_t> inputs = ex.at("inputs").i32(), targets = ex.at("targets").i32();
  const std::vector<float> ref_logits = ex.at("logits").f32(), ref_losses = ex.at("losses").f32();
  const size_t NV = static_cast<size_t>(B) * T * c.vocab_size;

  for (const bool bf16 : {false, true}) {
    const std::string tag = bf16 ? "reference bf16: " : "reference f32: ";
    // float32 at the reference's tolerances (test/fixtures/gpt2-tiny/README.md); bf16 within bf16's
    const double tol_logits = bf16 ? 0.05 : 1e-5, tol_loss = bf16 ? 0.02 : 1e-4, tol_grad = bf16 ? 0.05 : 1e-4;
    std::vector<float> grads_kept;
    for (const bool recompute : {false, true}) {
      const std::string t2 = tag + (recompute ? "(recompute) " : "");
      check(t2 + "forward, backward, AdamW step 1", [&] {
        auto be = cuda_model(c, params, B, T, bf16, recompute);
        std::vector<float> logits(NV);
        const float loss = be->forward(inputs.data(), targets.data(), B, T, logits.data(), {});
        const double dl = max_abs_diff(logits.data(), ref_logits.data(), NV);
        report(dl <= tol_logits, t2 + "logits", "max |diff| " + fmt("%.2e", dl) + " (tol " + fmt("%.0e", tol_logits) + ")");
        report(std::fabs(loss - ref_losses[0]) <= tol_loss, t2 + "loss",
               fmt("%.6f", loss) + " vs " + fmt("%.6f", ref_losses[0]));
        be->backward();
        const std::vector<float> g = read_all(*be, true), p0 = read_all(*be, false);
        double worst = 0;
        std::string worst_name;
        for (const ParamTensor& t : spec.tensors()) {
          const std::vector<float> r = ex.at("grad." + t.name).f32();
          const float* mine = g.data() + t.offset;
          const double e = bf16 ? rel_l2(mine, r.data(), t.numel) : max_abs_diff(mine, r.data(), t.numel) / std::max(1e-30, max_abs(r.data(), t.numel));
          if (e > worst) {
            worst = e;
            worst_name = t.name;
          }
        }
        report(worst <= tol_grad, t2 + "gradients",
               std::string(bf16 ? "worst relative L2 " : "worst max|diff|/max|g| ") + fmt("%.2e", worst) + " (" + worst_name + ")");
        if (recompute && !grads_kept.empty()) {
          report(max_abs_diff(g.data(), grads_kept.data(), g.size()) == 0.0, t2 + "gradients identical to keeping activations", "");
        }
        if (!recompute) grads_kept = g;
        if (bf16) return;
        be->step(adamw(1e-3f));
        const std::vector<float> p = read_all(*be, false);
        double worst_ref = 0, worst_own = 0;
        for (const ParamTensor& t : spec.tensors()) {
          const std::vector<float> r = ex.at("adamw_step1." + t.name).f32(), rg = ex.at("grad." + t.name).f32();
          const double gtol = 1e-4 * max_abs(rg.data(), t.numel);
          for (size_t i = 0; i < t.numel; ++i) {
            const size_t k = t.offset + i;
            const double own = p0[k] - 1e-3 * (g[k] / (std::fabs(g[k]) + 1e-8));
            worst_own = std::max(worst_own, std::fabs(p[k] - own));
            if (std::fabs(rg[i]) > gtol) worst_ref = std::max(worst_ref, std::fabs(static_cast<double>(p[k]) - r[i]));
          }
        }
        report(worst_ref <= 1e-5, t2 + "params after AdamW step 1", "max |diff| " + fmt("%.2e", worst_ref) + " where |g| is above tolerance");
        report(worst_own <= 1e-6, t2 + "update is lr * m_hat / (sqrt(v_hat) + eps)", "max |diff| " + fmt("%.2e", worst_own));
      });
    }
    check(tag + "10-step AdamW loss trajectory", [&] {
      auto be = cuda_model(c, params, B, T, bf16);
      double worst = 0;
      std::string losses;
      for (int step = 0; step < 10; ++step) {
        const float loss = be->forward(inputs.data(), targets.data(), B, T, nullptr, {});
        worst = std::max(worst, std::fabs(static_cast<double>(loss) - ref_losses[step]));
        losses += (step ? " " : "") + fmt("%.4f", loss);
        be->backward();
        be->step(adamw(1e-3f));
      }
      report(worst <= (bf16 ? 0.05 : 1e-4) && be->optimizer_step_count() == 10, tag + "10-step losses",
             "max |diff| " + fmt("%.2e", worst) + ": " + losses);
    });
  }
}

// ---- section: CUDA against the CPU on GPT-2 124M's shape ----

// One training step's results, the CPU's to compare the CUDA backend's with.
struct StepResult {
  float loss = 0;
  std::vector<float> logits, grads, after;  // [N, V], read_all's gradients, the parameters after AdamW step 1
};

StepResult train_step(Backend& be, const std::vector<int32_t>& inputs, const std::vector<int32_t>& targets, int B, int T,
                      const ForwardOptions& forward = {}) {
  StepResult r;
  r.logits.resize(static_cast<size_t>(B) * T * be.spec().config().vocab_size);
  r.loss = be.forward(inputs.data(), targets.data(), B, T, r.logits.data(), forward);
  be.backward();
  r.grads = read_all(be, true);
  be.step(adamw(1e-3f));
  r.after = read_all(be, false);
  return r;
}

// The CUDA backend's step against the CPU's, over the tensors that train, at float32's or bf16's tolerances.
void compare_step(const std::string& tag, Backend& be, const StepResult& cpu, const std::vector<float>& params,
                  const std::vector<int32_t>& inputs, const std::vector<int32_t>& targets, int B, int T, bool bf16,
                  const ForwardOptions& forward = {}) {
  const ModelSpec& spec = be.spec();
  std::vector<const ParamTensor*> trained;
  for (const ParamTensor& t : spec.tensors())
    if (t.offset >= spec.trainable_begin()) trained.push_back(&t);
  std::vector<float> logits(cpu.logits.size());
  const float loss = be.forward(inputs.data(), targets.data(), B, T, logits.data(), forward);
  const double scale = std::max(1.0, max_abs(cpu.logits.data(), logits.size()));
  const double dl = max_abs_diff(logits.data(), cpu.logits.data(), logits.size()) / scale;
  report(dl <= (bf16 ? 0.1 : 1e-4), tag + "logits", "max |diff| / max(1, max|logit|) " + fmt("%.2e", dl));
  report(std::fabs(loss - cpu.loss) <= (bf16 ? 0.02 : 1e-4), tag + "loss", fmt("%.6f", loss) + " vs " + fmt("%.6f", cpu.loss));
  be.backward();
  const std::vector<float> g = read_all(be, true);
  double worst = 0;
  std::string worst_name;
  for (const ParamTensor* t : trained) {
    const float* ref = cpu.grads.data() + t->offset;
    const double e = bf16 ? rel_l2(g.data() + t->offset, ref, t->numel)
                          : max_abs_diff(g.data() + t->offset, ref, t->numel) / std::max(1e-30, max_abs(ref, t->numel));
    if (e > worst) {
      worst = e;
      worst_name = t->name;
    }
  }
  report(worst <= (bf16 ? 0.1 : 1e-3), tag + "gradients",
         std::string(bf16 ? "worst relative L2 " : "worst max|diff|/max|g| ") + fmt("%.2e", worst) + " (" + worst_name + ")");
  const float norm = be.step(adamw(1e-3f));
  const std::vector<float> p = read_all(be, false);
  // At t = 1 AdamW moves a parameter by about lr * sign(g): compare where |g| is clearly above rounding.
  double worst_p = 0;
  size_t agree = 0, counted = 0;
  for (const ParamTensor* t : trained) {
    const double gmax = max_abs(cpu.grads.data() + t->offset, t->numel);
    for (size_t i = 0; i < t->numel; ++i) {
      const size_t k = t->offset + i;
      if (std::fabs(cpu.grads[k]) <= (bf16 ? 0.1 : 1e-3) * gmax) continue;
      ++counted;
      worst_p = std::max(worst_p, std::fabs(static_cast<double>(p[k]) - cpu.after[k]));
      if ((p[k] - params[k]) * (cpu.after[k] - params[k]) > 0) ++agree;
    }
  }
  if (bf16) {
    const double frac = counted ? static_cast<double>(agree) / counted : 0;
    report(frac >= 0.999, tag + "AdamW update direction", fmt("%.5f", frac) + " of " + std::to_string(counted) + " well-conditioned entries agree");
  } else {
    report(worst_p <= 1e-5, tag + "params after AdamW step 1", "max |diff| " + fmt("%.2e", worst_p) + " over " + std::to_string(counted) + " entries");
  }
  report(std::isfinite(norm) && norm > 0, tag + "gradient norm", fmt("%.6f", norm));
}

void section_cpu(const Shape& shape) {
  const GPT2Config c = shape.config;
  const ModelSpec spec(c);
  const int B = shape.B, T = shape.T;
  std::printf("random model, %d layers, %d channels, B x T = %d x %d\n", c.n_layer, c.n_embd, B, T);
  const std::vector<float> params = random_params(spec, 1);
  const std::vector<int32_t> inputs = random_tokens(B * T, c.vocab_size, 2), targets = random_tokens(B * T, c.vocab_size, 3);

  const auto t0 = std::chrono::steady_clock::now();
  const StepResult cpu = train_step(*cpu_model(c, params, B, T), inputs, targets, B, T);
  std::printf("CPU reference: %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

  for (const bool bf16 : {false, true}) {
    const std::string tag = bf16 ? "CUDA bf16 vs CPU: " : "CUDA f32 vs CPU: ";
    check(tag + "forward, backward, step", [&] {
      compare_step(tag, *cuda_model(c, params, B, T, bf16), cpu, params, inputs, targets, B, T, bf16);
    });
  }

  // The optimizer step as one cooperative launch (DIXIE_FUSED_ADAMW=1) against its three launches: the same
  // norms and parameters bit for bit over two steps, the first clipped (norm above 1), with weight decay.
  check("CUDA bf16: fused optimizer step = three launches", [&] {
    std::unique_ptr<Backend> three, one;
    {
      Switches off({"DIXIE_FUSED_ADAMW"}, false);
      three = cuda_model(c, params, B, T, true);
    }
    {
      Switches on({"DIXIE_FUSED_ADAMW"}, true);
      one = cuda_model(c, params, B, T, true);
    }
    StepOptions o = adamw(1e-3f);
    o.grad_clip = 1.0f;
    o.weight_decay = 0.1f;
    std::string norms;
    bool same = true;
    for (int step = 0; step < 2; ++step) {
      float n[2];
      int i = 0;
      for (Backend* be : {three.get(), one.get()}) {
        be->forward(inputs.data(), targets.data(), B, T, nullptr, {});
        be->backward();
        n[i++] = be->step(o);
      }
      same = same && std::memcmp(&n[0], &n[1], sizeof(float)) == 0;
      norms += (step ? ", " : "") + fmt("%.6f", n[0]) + " / " + fmt("%.6f", n[1]);
    }
    const std::vector<float> a = read_all(*three, false), b = read_all(*one, false);
    const bool params_same = a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    report(same && params_same, "CUDA bf16: fused optimizer step = three launches",
           "norms " + norms + (params_same ? ", parameters identical" : ", parameters DIFFER"));
  });
}

// ---- section: decoding ----

// The decoding script: two calls, a prefill of three slots (new1[s] tokens of seq[s] each), then one token each in
// another order.
const std::vector<int> kPrefillSlots = {0, 1, 2}, kStepSlots = {2, 0, 1};

std::vector<std::vector<int32_t>> decode_sequences(const std::vector<int>& new1, int V) {
  std::vector<std::vector<int32_t>> seq(3);
  Rng rng{5};
  for (int s = 0; s < 3; ++s)
    for (int k = 0; k < new1[s] + 1; ++k) seq[s].push_back(static_cast<int32_t>(rng.next() % V));
  return seq;
}

// The decode script's two calls' logits [3, V] each.
using CallLogits = std::pair<std::vector<float>, std::vector<float>>;

// The larger of the two calls' max |a - b|.
double max_abs_diff(const CallLogits& a, const CallLogits& b) {
  return std::max(max_abs_diff(a.first.data(), b.first.data(), a.first.size()),
                  max_abs_diff(a.second.data(), b.second.data(), a.second.size()));
}

// The script's calls, from kv_forward.
CallLogits run_kv(Backend& be, const std::vector<std::vector<int32_t>>& seq, const std::vector<int>& new1) {
  const int V = be.spec().config().vocab_size;
  std::vector<float> out1(3 * static_cast<size_t>(V)), out2(3 * static_cast<size_t>(V));
  be.kv_reserve(4);
  std::vector<int32_t> tok;
  for (int s : kPrefillSlots) tok.insert(tok.end(), seq[s].begin(), seq[s].begin() + new1[s]);
  be.kv_forward(3, kPrefillSlots.data(), new1.data(), tok.data(), out1.data(), KvOutput::LastLogits);
  std::vector<int32_t> tok2;
  const std::vector<int> ones = {1, 1, 1};
  for (int s : kStepSlots) tok2.push_back(seq[s][new1[s]]);
  be.kv_forward(3, kStepSlots.data(), ones.data(), tok2.data(), out2.data(), KvOutput::LastLogits);
  return std::make_pair(out1, out2);
}

void section_decode(const Shape& shape) {
  const GPT2Config c = shape.config;
  const ModelSpec spec(c);
  const int V = c.vocab_size;
  const std::vector<float> params = random_params(spec, 4);
  const std::vector<int> slots1 = kPrefillSlots, new1 = shape.prefill, slots2 = kStepSlots;
  const std::vector<std::vector<int32_t>> seq = decode_sequences(new1, V);

  // The same logits from full forward passes over each slot's tokens.
  auto run_full = [&](Backend& be) {
    std::vector<float> out1(3 * static_cast<size_t>(V)), out2(3 * static_cast<size_t>(V));
    for (int call = 0; call < 2; ++call) {
      const std::vector<int>& order = call == 0 ? slots1 : slots2;
      for (int i = 0; i < 3; ++i) {
        const int s = order[i], len = new1[s] + call;
        std::vector<float> logits(static_cast<size_t>(len) * V);
        be.forward(seq[s].data(), nullptr, 1, len, logits.data(), {});
        std::copy(logits.end() - V, logits.end(), (call == 0 ? out1 : out2).begin() + static_cast<std::ptrdiff_t>(i) * V);
      }
    }
    return std::make_pair(out1, out2);
  };

  CallLogits full_f32;
  check("decode f32: KV-cached logits = full forward logits", [&] {
    auto be = cuda_model(c, params, 1, c.n_ctx, false, false, false);
    full_f32 = run_full(*be);
    const auto kv = run_kv(*be, seq, new1);
    const double d1 = max_abs_diff(kv.first.data(), full_f32.first.data(), kv.first.size());
    const double d2 = max_abs_diff(kv.second.data(), full_f32.second.data(), kv.second.size());
    report(std::max(d1, d2) <= 1e-3, "decode f32: KV-cached logits = full forward logits",
           "max |diff| prefill " + fmt("%.2e", d1) + ", step " + fmt("%.2e", d2));
    report(be->kv_length(0) == new1[0] + 1 && be->kv_length(1) == new1[1] + 1 && be->kv_length(2) == new1[2] + 1 &&
               be->kv_length(3) == 0,
           "decode f32: slot lengths", std::to_string(be->kv_length(0)) + " " + std::to_string(be->kv_length(1)) + " " +
                                           std::to_string(be->kv_length(2)) + " " + std::to_string(be->kv_length(3)));
    auto cpu = cpu_model(c, params, 1, c.n_ctx, false);
    const auto cpu_kv = run_kv(*cpu, seq, new1);
    const double e = max_abs_diff(kv, cpu_kv);
    report(e <= 1e-3, "decode f32: CUDA = CPU decoding", "max |diff| " + fmt("%.2e", e));
  });
  check("decode bf16: KV-cached logits close to float32", [&] {
    if (full_f32.first.empty()) throw std::runtime_error("no float32 reference (the check above failed)");
    auto be = cuda_model(c, params, 1, c.n_ctx, true, false, false);
    const auto kv = run_kv(*be, seq, new1);
    const auto full = run_full(*be);
    const double scale = std::max(1.0, max_abs(full_f32.first.data(), full_f32.first.size()));
    const double d = max_abs_diff(kv, full_f32) / scale, self = max_abs_diff(kv, full) / scale;
    report(d <= 0.1, "decode bf16: KV-cached logits vs float32", "max |diff| / max(1, max|logit|) " + fmt("%.2e", d));
    report(self <= 0.1, "decode bf16: KV-cached vs bf16 full forward", "max |diff| / max(1, max|logit|) " + fmt("%.2e", self));
  });
  // kv_forward with the output of every token, as a prompt's log-probabilities and embeddings take it: two calls over
  // a cache of 4 slots, the first of more tokens than slots, the second starting one slot and continuing another,
  // against full forward passes' logits at each position, and the CPU's final hidden states; then a call of one token
  // more than the rows of output kv_reserve planned.
  Rng every_rng{23};
  std::vector<int32_t> a(12), b(1);
  for (auto& t : a) t = static_cast<int32_t>(every_rng.next() % V);
  b[0] = static_cast<int32_t>(every_rng.next() % V);
  const auto every = [&](Backend& be, KvOutput output) {
    const size_t width = output == KvOutput::TokenStates ? c.n_embd : V;
    std::vector<float> out(13 * width);
    be.kv_reserve(4);
    const int32_t first_slots[1] = {0}, first_new[1] = {9};
    be.kv_forward(1, first_slots, first_new, a.data(), out.data(), output);
    const int32_t then_slots[2] = {3, 0}, then_new[2] = {1, 3}, then_tokens[4] = {b[0], a[9], a[10], a[11]};
    be.kv_forward(2, then_slots, then_new, then_tokens, out.data() + 9 * width, output);
    return out;
  };
  check("decode f32: logits of every new token = full forward logits", [&] {
    auto cpu = cpu_model(c, params, 1, c.n_ctx, false);
    std::vector<float> full_a(12 * static_cast<size_t>(V)), full_b(V), expected;
    cpu->forward(a.data(), nullptr, 1, 12, full_a.data(), {});
    cpu->forward(b.data(), nullptr, 1, 1, full_b.data(), {});
    expected.insert(expected.end(), full_a.begin(), full_a.begin() + 9 * static_cast<std::ptrdiff_t>(V));
    expected.insert(expected.end(), full_b.begin(), full_b.end());
    expected.insert(expected.end(), full_a.begin() + 9 * static_cast<std::ptrdiff_t>(V), full_a.end());
    auto be = cuda_model(c, params, 1, c.n_ctx, false, false, false);
    const std::vector<float> gpu = every(*be, KvOutput::TokenLogits), cpu_every = every(*cpu, KvOutput::TokenLogits);
    const double d = max_abs_diff(gpu.data(), expected.data(), expected.size());
    const double e = max_abs_diff(cpu_every.data(), expected.data(), expected.size());
    report(d <= 1e-3, "decode f32: CUDA logits of every new token = full forward", "max |diff| " + fmt("%.2e", d));
    report(e <= 1e-3, "decode f32: CPU logits of every new token = full forward", "max |diff| " + fmt("%.2e", e));
    const int rows = be->kv_reserve(4);
    std::vector<int32_t> slots, n_new;
    for (int slot = 0, left = rows + 1; left > 0; ++slot) {
      slots.push_back(slot);
      n_new.push_back(std::min(left, c.n_ctx));
      left -= n_new.back();
    }
    std::string refused = "nothing";
    try {
      const std::vector<int32_t> tokens(rows + 1, a[0]);
      std::vector<float> out((rows + 1) * static_cast<size_t>(V));
      be->kv_forward(static_cast<int>(slots.size()), slots.data(), n_new.data(), tokens.data(), out.data(), KvOutput::TokenLogits);
    } catch (const std::invalid_argument& err) {
      refused = err.what();
    }
    report(rows >= 4 && refused.find("rows kv_reserve planned") != std::string::npos,
           "decode f32: every_token over more tokens than the rows of logits refused", std::to_string(rows) + " rows: " + refused);
  });
  // States, which are not bounded by the rows of logits: the two calls above, then one of more tokens than the GPU's
  // rows of logits, across slots.
  check("decode: final hidden states of every new token = the CPU's", [&] {
    auto f32 = cuda_model(c, params, 1, c.n_ctx, false, false, false);
    const int long_rows = f32->kv_reserve(4) + 1;
    Rng long_rng{29};
    std::vector<int32_t> long_tokens(long_rows), long_slots, long_new;
    for (auto& t : long_tokens) t = static_cast<int32_t>(long_rng.next() % V);
    for (int slot = 0, left = long_rows; left > 0; ++slot) {
      long_slots.push_back(slot);
      long_new.push_back(std::min(left, c.n_ctx));
      left -= long_new.back();
    }
    const auto states = [&](Backend& be) {
      std::vector<float> out = every(be, KvOutput::TokenStates);
      const size_t at = out.size();
      out.resize(at + long_rows * static_cast<size_t>(c.n_embd));
      be.kv_reserve(4);
      be.kv_forward(static_cast<int>(long_slots.size()), long_slots.data(), long_new.data(), long_tokens.data(), out.data() + at,
                    KvOutput::TokenStates);
      return out;
    };
    auto cpu = cpu_model(c, params, 1, c.n_ctx, false);
    auto bf16 = cuda_model(c, params, 1, c.n_ctx, true, false, false);
    const std::vector<float> expected = states(*cpu), gpu_f32 = states(*f32), gpu_bf16 = states(*bf16);
    const double scale = std::max(1.0, max_abs(expected.data(), expected.size()));
    for (const auto& [name, gpu, bound] : {std::tuple{"f32", &gpu_f32, 1e-4}, std::tuple{"bf16", &gpu_bf16, 0.1}}) {
      const double d = max_abs_diff(gpu->data(), expected.data(), expected.size()) / scale;
      report(d <= bound, std::string("decode ") + name + ": CUDA states of every new token = the CPU's",
             std::to_string(expected.size() / c.n_embd) + " tokens, max |diff| / max(1, max|state|) " + fmt("%.2e", d));
    }
  });
  // 8-bit weights: the first call's chunk has more rows than q8_matvec takes (the matrices expanded for a GEMM), the
  // second three (q8_matvec).
  check("decode q8_0: KV-cached logits close to float32 and to the CPU's", [&] {
    if (full_f32.first.empty()) throw std::runtime_error("no float32 reference (the check above failed)");
    BackendOptions o;
    o.trainable = false;
    o.weight_dtype = DType::Q8_0;
    auto be = make_cuda_backend(c, o);
    auto cpu = make_cpu_backend(c, o);
    be->write_params(0, params.data(), params.size(), DType::F32);
    cpu->write_params(0, params.data(), params.size(), DType::F32);
    // The layer matrices' blocks are quantized alike (on the CPU the token embedding is Q8_0 too and the other
    // parameters f16; float32 here).
    const std::vector<float> gpu_weights = read_all(*be, false), cpu_weights = read_all(*cpu, false);
    double worst = 0;
    for (const ParamTensor& t : spec.tensors())
      if (t.kind == QKV_W || t.kind == ATTPROJ_W || t.kind == FC_W || t.kind == FCPROJ_W)
        worst = std::max(worst, max_abs_diff(gpu_weights.data() + t.offset, cpu_weights.data() + t.offset, t.numel));
    report(worst == 0, "decode q8_0: layer matrices read back = the CPU's", "max |diff| " + fmt("%.2e", worst));
    const auto kv = run_kv(*be, seq, new1);
    const auto cpu_kv = run_kv(*cpu, seq, new1);
    const double scale = std::max(1.0, max_abs(full_f32.first.data(), full_f32.first.size()));
    const double d = max_abs_diff(kv, full_f32) / scale, e = max_abs_diff(kv, cpu_kv) / scale;
    report(d <= 0.1, "decode q8_0: KV-cached logits vs float32", "max |diff| / max(1, max|logit|) " + fmt("%.2e", d));
    report(e <= 0.1, "decode q8_0: CUDA vs CPU q8_0 decoding", "max |diff| / max(1, max|logit|) " + fmt("%.2e", e));
  });
  // kv_step against kv_forward + sample on a twin backend: a first step in which one slot feeds only part of its
  // prompt (not sampled), decode steps, a slot cut back between them, a row per setting (greedy with a strong
  // penalty, top-k + top-p + penalty, plain sampling). sample() is given each slot's tokens as its history, which
  // kv_step must find where the decoder keeps them.
  auto fused_vs_split = [&](const std::string& name, const std::function<std::unique_ptr<Backend>()>& make) {
    check(name, [&] {
      auto split = make(), fused = make();
      split->kv_reserve(4);
      fused->kv_reserve(4);
      // Logit biases on two rows: the sampler's settings copy and its biases' copy go to the device apart.
      const int32_t bias_tokens[3] = {3, 7, 11};
      const float bias_values[3] = {-100.0f, 3.0f, 5.0f};
      // A grammar's mask on the third row (every third token), copied to the device beside the biases.
      std::vector<uint32_t> every_third((V + 31) / 32, 0u);
      for (int k = 0; k < V; k += 3) every_third[k >> 5] |= 1u << (k & 31);
      SamplingParams masked{1.0f, 0, 1.0f, 0.0f};
      masked.allowed = every_third.data();
      masked.allowed_words = static_cast<int>(every_third.size());
      const SamplingParams settings[3] = {{0.0f, 0, 1.0f, 0.5f, 2, bias_tokens, bias_values},
                                          {0.9f, 40, 0.9f, 0.85f, 1, bias_tokens + 2, bias_values + 2},
                                          masked};
      std::vector<std::vector<int32_t>> held(3);
      std::vector<uint64_t> rng_split(6), rng_fused;
      Rng seeds{17};
      for (auto& x : rng_split) x = seeds.next();
      rng_fused = rng_split;
      int same = 0, drawn = 0;
      double worst = 0;
      // Feeds slots[i] the tokens feed[i] on both and samples the entries `rows`; returns the split side's tokens.
      auto step = [&](const std::vector<int>& slots, const std::vector<std::vector<int32_t>>& feed, const std::vector<int>& rows,
                      bool want_logits) {
        const int n = static_cast<int>(slots.size()), m = static_cast<int>(rows.size());
        std::vector<int> n_new(n);
        std::vector<int32_t> tokens;
        for (int i = 0; i < n; ++i) {
          n_new[i] = static_cast<int>(feed[i].size());
          tokens.insert(tokens.end(), feed[i].begin(), feed[i].end());
          held[slots[i]].insert(held[slots[i]].end(), feed[i].begin(), feed[i].end());
        }
        std::vector<float> logits(static_cast<size_t>(n) * V), row_logits(static_cast<size_t>(m) * V), fused_logits;
        split->kv_forward(n, slots.data(), n_new.data(), tokens.data(), logits.data(), KvOutput::LastLogits);
        std::vector<SamplingParams> sp(m);
        std::vector<const int32_t*> hp(m);
        std::vector<int32_t> hl(m), out_split(m), out_fused(m);
        std::vector<uint64_t> rs(2 * m), rf(2 * m);
        for (int j = 0; j < m; ++j) {
          const int slot = slots[rows[j]];
          std::copy_n(logits.begin() + static_cast<std::ptrdiff_t>(rows[j]) * V, V, row_logits.begin() + static_cast<std::ptrdiff_t>(j) * V);
          sp[j] = settings[slot];
          hp[j] = held[slot].data();
          hl[j] = static_cast<int32_t>(held[slot].size());
          std::copy_n(rng_split.begin() + 2 * slot, 2, rs.begin() + 2 * j);
          std::copy_n(rng_fused.begin() + 2 * slot, 2, rf.begin() + 2 * j);
        }
        split->sample(m, row_logits.data(), sp.data(), rs.data(), hp.data(), hl.data(), out_split.data());
        if (want_logits) fused_logits.resize(static_cast<size_t>(m) * V);
        fused->kv_step(n, slots.data(), n_new.data(), tokens.data(), m, rows.data(), sp.data(), rf.data(), out_fused.data(),
                       want_logits ? fused_logits.data() : nullptr);
        if (want_logits) worst = std::max(worst, max_abs_diff(fused_logits.data(), row_logits.data(), row_logits.size()));
        for (int j = 0; j < m; ++j) {
          const int slot = slots[rows[j]];
          same += out_split[j] == out_fused[j];
          ++drawn;
          std::copy_n(rs.begin() + 2 * j, 2, rng_split.begin() + 2 * slot);
          std::copy_n(rf.begin() + 2 * j, 2, rng_fused.begin() + 2 * slot);
        }
        return out_split;
      };
      const std::vector<int32_t> prompt0 = random_tokens(20, V, 61), prompt1 = random_tokens(30, V, 62), prompt2 = random_tokens(5, V, 63);
      std::vector<int32_t> next(3);
      std::vector<int32_t> t = step({0, 1, 2}, {prompt0, {prompt1.begin(), prompt1.begin() + 15}, prompt2}, {0, 2}, true);
      next[0] = t[0];
      next[2] = t[1];
      t = step({1, 0, 2}, {{prompt1.begin() + 15, prompt1.end()}, {next[0]}, {next[2]}}, {0, 1, 2}, false);
      next = {t[1], t[0], t[2]};
      for (int k = 0; k < 8; ++k) {
        if (k == 4) {  // slot 2 cut back to its first 3 tokens: its history shrinks with it
          split->kv_truncate(2, 3);
          fused->kv_truncate(2, 3);
          held[2].resize(3);
        }
        t = step({0, 1, 2}, {{next[0]}, {next[1]}, {next[2]}}, {0, 1, 2}, k % 3 == 0);
        next = t;
      }
      const bool lengths = fused->kv_length(0) == split->kv_length(0) && fused->kv_length(2) == static_cast<int>(held[2].size());
      report(same == drawn && rng_fused == rng_split && worst <= 1e-4 && lengths, name,
             std::to_string(same) + "/" + std::to_string(drawn) + " tokens as kv_forward + sample, RNG states " +
                 (rng_fused == rng_split ? "equal" : "DIFFER") + ", logits max |diff| " + fmt("%.2e", worst) +
                 (lengths ? "" : ", slot lengths DIFFER"));
    });
  };
  fused_vs_split("decode f32: kv_step = kv_forward + sample", [&] { return cuda_model(c, params, 1, c.n_ctx, false, false, false); });
  fused_vs_split("decode bf16: kv_step = kv_forward + sample", [&] { return cuda_model(c, params, 1, c.n_ctx, true, false, false); });
  fused_vs_split("decode, the CPU backend: kv_step = kv_forward + sample", [&] { return cpu_model(c, params, 1, c.n_ctx, false); });
}

// ---- section: a LoRA adapter ----

void section_lora(const Shape& shape) {
  const GPT2Config c = shape.config;
  LoraShape lora;
  lora.rank = 4;
  lora.targets = 15;  // all four layer matrices
  lora.scaling = 2.0f;
  const ModelSpec spec(c, lora);
  const int B = shape.B, T = shape.T;
  const size_t first = spec.trainable_begin();
  std::printf("random model with a rank-%d adapter on every layer matrix, %d layers, %d channels, B x T = %d x %d\n",
              lora.rank, c.n_layer, c.n_embd, B, T);
  // Factors large enough that the adapter's path moves the logits (B nonzero, unlike a fresh adapter's).
  std::vector<float> params = random_params(spec, 6);
  Rng rng{7};
  for (size_t i = first; i < params.size(); ++i) params[i] = static_cast<float>(0.1 * rng.normal());
  const std::vector<int32_t> inputs = random_tokens(B * T, c.vocab_size, 8), targets = random_tokens(B * T, c.vocab_size, 9);
  const StepResult cpu = train_step(*cpu_model(c, params, B, T, true, lora), inputs, targets, B, T);
  {
    // The adapter's part of the logits, so that the checks below are known to see it.
    auto base = cpu_model(c, std::vector<float>(params.begin(), params.begin() + static_cast<std::ptrdiff_t>(first)), B, T, false);
    std::vector<float> logits(cpu.logits.size());
    base->forward(inputs.data(), nullptr, B, T, logits.data(), {});
    std::printf("the adapter moves the CPU's logits by up to %.3f\n", max_abs_diff(logits.data(), cpu.logits.data(), logits.size()));
  }

  std::vector<float> grads_kept;
  for (const bool bf16 : {false, true}) {
    const std::string tag = bf16 ? "LoRA CUDA bf16 vs CPU: " : "LoRA CUDA f32 vs CPU: ";
    check(tag + "forward, backward, step", [&] {
      auto be = cuda_model(c, params, B, T, bf16, false, true, lora);
      compare_step(tag, *be, cpu, params, inputs, targets, B, T, bf16);
      const std::vector<float> p = read_all(*be, false);
      report(max_abs_diff(p.data(), params.data(), first) == 0.0, tag + "the base is unchanged by the step", "");
      const MemoryReport m = be->memory();
      bool refused = false;
      try {
        float g = 0;
        be->read_grads(first - 1, &g, 1);
      } catch (const std::out_of_range&) {
        refused = true;
      }
      report(refused && m.grads == (spec.num_params() - first) * sizeof(float), tag + "no gradients of the frozen base",
             std::string(refused ? "readGrads of a base range throws" : "readGrads of a base range DID NOT THROW") +
                 ", gradient memory " + std::to_string(m.grads) + " bytes for " + std::to_string(spec.num_params() - first) +
                 " trained parameters");
    });
  }

  // A frozen base held in 16 or 8 bits: the CPU stores it so (its vectors in f16 under q8_0) and trains the adapter as
  // over a float32 base holding the stored values; CUDA must store the same values and train alike, keeping only the
  // vectors in float32 beside the narrow layer matrices.
  for (const DType dtype : {DType::F16, DType::BF16, DType::Q8_0}) {
    const std::string name = dtype == DType::F16 ? "f16" : dtype == DType::BF16 ? "bf16" : "q8_0";
    const StepResult cpu_narrow = train_step(*cpu_model(c, params, B, T, true, lora, 0.0f, dtype), inputs, targets, B, T);
    report(cpu_narrow.loss != cpu.loss, "LoRA over a " + name + " base: the CPU's stored base changes the loss",
           fmt("%.6f", cpu_narrow.loss) + " vs " + fmt("%.6f", cpu.loss) + " over float32");
    for (const bool bf16 : {false, true}) {
      const std::string tag = "LoRA over a " + name + " base, CUDA " + (bf16 ? "bf16" : "f32") + " vs CPU: ";
      check(tag + "forward, backward, step", [&] {
        auto be = cuda_model(c, params, B, T, bf16, false, true, lora, 0.0f, dtype);
        const std::vector<float> stored = read_all(*be, false);
        const double ds = max_abs_diff(stored.data(), cpu_narrow.after.data(), first);
        report(ds == 0.0, tag + "readParams gives the base the CPU stores", "max |diff| " + fmt("%.2e", ds));
        compare_step(tag, *be, cpu_narrow, params, inputs, targets, B, T, bf16);
        const std::vector<float> p = read_all(*be, false);
        report(max_abs_diff(p.data(), stored.data(), first) == 0.0, tag + "the base is unchanged by the step", "");
        // The parameters' memory: the narrow matrices (int8 and f16 scales, or 16 bits), the rest as float32 (and
        // bf16), where a float32 base would hold every parameter in float32 (and bf16).
        size_t matrices = 0;
        for (ParamKind kind : kLayerMatrices) matrices += spec.group_numel(kind);
        const size_t x = bf16 ? 6 : 4, rest = (spec.num_params() - matrices) * x;
        const size_t narrow_bytes = dtype == DType::Q8_0 ? be->memory().params - rest : matrices * 2;
        const size_t expected = rest + narrow_bytes, full = spec.num_params() * x;
        report(be->memory().params == expected && narrow_bytes < matrices * (dtype == DType::Q8_0 ? 1.1 : 2.01),
               tag + "parameter memory", std::to_string(be->memory().params) + " bytes (float32 base: " + std::to_string(full) + ")");
      });
    }
  }

  // Dropout: a training forward's masks (core/dropout.h) are drawn alike on both backends, element for element, so
  // that the CUDA step compares with the CPU's as above; an evaluation forward drops nothing.
  const float p = 0.25f;
  ForwardOptions training;
  training.training = true;
  training.step = 3;
  training.micro_batch = 1;
  const StepResult cpu_drop = train_step(*cpu_model(c, params, B, T, true, lora, p), inputs, targets, B, T, training);
  report(cpu_drop.loss != cpu.loss, "LoRA dropout: the CPU's training forward drops",
         "loss " + fmt("%.6f", cpu_drop.loss) + " with dropout " + fmt("%.2f", p) + ", " + fmt("%.6f", cpu.loss) + " without");
  for (const bool bf16 : {false, true}) {
    const std::string tag = bf16 ? "LoRA dropout CUDA bf16 vs CPU: " : "LoRA dropout CUDA f32 vs CPU: ";
    check(tag + "forward, backward, step", [&] {
      auto be = cuda_model(c, params, B, T, bf16, false, true, lora, p);
      if (!bf16) {
        std::vector<float> logits(cpu.logits.size());
        be->forward(inputs.data(), nullptr, B, T, logits.data(), {});
        const double d = max_abs_diff(logits.data(), cpu.logits.data(), logits.size()) / std::max(1.0, max_abs(cpu.logits.data(), logits.size()));
        report(d <= 1e-4, tag + "an evaluation forward drops nothing", "logits against the CPU's without dropout: " + fmt("%.2e", d));
      }
      compare_step(tag, *be, cpu_drop, params, inputs, targets, B, T, bf16, training);
    });
  }

  for (const float dropout : {0.0f, p}) {
    const std::string tag = dropout > 0 ? "LoRA dropout CUDA f32: " : "LoRA CUDA f32: ";
    check(tag + "recomputing gives the same gradients", [&] {
      std::vector<std::vector<float>> grads;
      for (const bool recompute : {false, true}) {
        auto be = cuda_model(c, params, B, T, false, recompute, true, lora, dropout);
        be->forward(inputs.data(), targets.data(), B, T, nullptr, training);
        be->backward();
        grads.push_back(read_all(*be, true));
      }
      report(max_abs_diff(grads[0].data(), grads[1].data(), grads[0].size()) == 0.0, tag + "gradients identical when recomputing", "");
    });
  }

  const std::vector<int> new1 = shape.prefill;
  const std::vector<std::vector<int32_t>> seq = decode_sequences(new1, c.vocab_size);
  CallLogits cpu_kv;
  check("LoRA decode f32: CUDA = CPU decoding", [&] {
    cpu_kv = run_kv(*cpu_model(c, params, 1, c.n_ctx, false, lora), seq, new1);
    const auto kv = run_kv(*cuda_model(c, params, 1, c.n_ctx, false, false, false, lora), seq, new1);
    const double e = max_abs_diff(kv, cpu_kv);
    report(e <= 1e-3, "LoRA decode f32: CUDA = CPU decoding", "max |diff| " + fmt("%.2e", e));
  });
  check("LoRA decode bf16: close to the CPU's float32 decoding", [&] {
    if (cpu_kv.first.empty()) throw std::runtime_error("no CPU reference (the check above failed)");
    const auto kv = run_kv(*cuda_model(c, params, 1, c.n_ctx, true, false, false, lora), seq, new1);
    const double scale = std::max(1.0, max_abs(cpu_kv.first.data(), cpu_kv.first.size()));
    const double d = max_abs_diff(kv, cpu_kv) / scale;
    report(d <= 0.1, "LoRA decode bf16: KV-cached logits vs the CPU's float32", "max |diff| / max(1, max|logit|) " + fmt("%.2e", d));
  });
  // A model training over a narrow base decodes over it as stored (8-bit steps by q8_matvec, 16-bit matrices
  // expanded) with the adapter beside it: as a float32 base holding the values the CPU stores.
  for (const DType dtype : {DType::F16, DType::BF16, DType::Q8_0}) {
    const std::string tag = std::string("LoRA decode over a ") + (dtype == DType::F16 ? "f16" : dtype == DType::BF16 ? "bf16" : "q8_0") +
                            " base f32: CUDA = over float32 holding the stored values";
    check(tag, [&] {
      std::vector<float> stored = read_all(*cpu_model(c, params, 1, 1, true, lora, 0.0f, dtype), false);
      const auto ref = run_kv(*cuda_model(c, stored, 1, c.n_ctx, false, false, false, lora), seq, new1);
      const auto kv = run_kv(*cuda_model(c, params, 1, c.n_ctx, false, false, true, lora, 0.0f, dtype), seq, new1);
      const double e = max_abs_diff(kv, ref);
      report(e <= 1e-3, tag, "max |diff| " + fmt("%.2e", e));
    });
  }
}

// ---- section: LoRA adapters bound to slots ----

// An adapter as kv_add_adapter takes it, with random factors large enough to move the logits.
struct SlotAdapter {
  int rank;
  float scaling;
  std::vector<uint8_t> modules;  // [n_layer * 4]
  std::vector<float> factors;
};

SlotAdapter random_adapter(const ModelSpec& spec, int rank, float scaling, const std::vector<uint8_t>& modules, uint64_t seed) {
  SlotAdapter a{rank, scaling, modules, {}};
  Rng rng{seed};
  for (size_t m = 0; m < modules.size(); ++m) {
    if (!modules[m]) continue;
    const auto [in, out] = spec.matrix_shape(kLayerMatrices[m % 4]);
    for (size_t k = 0; k < static_cast<size_t>(rank) * (in + out); ++k) a.factors.push_back(static_cast<float>(0.05 * rng.normal()));
  }
  return a;
}

// A decoding script over slots 0..n-1: the slots of `run` prefilled with their prompts in one call, then `steps`
// calls that feed each of them one more token, in an order that turns. Returns the logits [calls][n_slots * V],
// by slot (zero for slots not in `run`).
std::vector<std::vector<float>> run_slots(Backend& be, const std::vector<std::vector<int32_t>>& seq, const std::vector<int>& prompt,
                                          const std::vector<int>& run, int steps) {
  const int V = be.spec().config().vocab_size, n_slots = static_cast<int>(seq.size());
  std::vector<std::vector<float>> out;
  for (int call = 0; call <= steps; ++call) {
    std::vector<int> slots, n_new;
    std::vector<int32_t> tokens;
    for (size_t i = 0; i < run.size(); ++i) {
      const int s = run[(i + call) % run.size()];
      const int from = call == 0 ? 0 : prompt[s] + call - 1, to = prompt[s] + call;
      slots.push_back(s);
      n_new.push_back(to - from);
      tokens.insert(tokens.end(), seq[s].begin() + from, seq[s].begin() + to);
    }
    std::vector<float> logits(slots.size() * V), by_slot(static_cast<size_t>(n_slots) * V, 0.0f);
    be.kv_forward(static_cast<int>(slots.size()), slots.data(), n_new.data(), tokens.data(), logits.data(), KvOutput::LastLogits);
    for (size_t i = 0; i < slots.size(); ++i)
      std::copy_n(logits.begin() + static_cast<std::ptrdiff_t>(i) * V, V, by_slot.begin() + static_cast<std::ptrdiff_t>(slots[i]) * V);
    out.push_back(std::move(by_slot));
  }
  return out;
}

double max_diff_calls(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, max_abs_diff(a[i].data(), b[i].data(), a[i].size()));
  return d;
}

// Whether body throws E with `words` in its message.
template <typename E>
bool refuses(const std::function<void()>& body, const std::string& words) {
  try {
    body();
  } catch (const E& e) {
    return std::string(e.what()).find(words) != std::string::npos;
  } catch (const std::exception&) {
    return false;
  }
  return false;
}

void section_adapters(const Shape& shape) {
  const GPT2Config c = shape.config;
  const ModelSpec spec(c);
  const int V = c.vocab_size, L = c.n_layer, kSteps = 3;
  const std::vector<float> params = random_params(spec, 21);
  // Three adapters of different ranks and targets: every matrix; c_attn and c_fc; c_proj of attention in layer 0
  // and of the MLP in the last layer.
  std::vector<uint8_t> all(L * 4, 1), attn_fc(L * 4, 0), projs(L * 4, 0);
  for (int l = 0; l < L; ++l) attn_fc[l * 4 + 0] = attn_fc[l * 4 + 2] = 1;
  projs[1] = projs[(L - 1) * 4 + 3] = 1;
  const std::vector<SlotAdapter> adapters = {random_adapter(spec, 4, 2.0f, all, 31), random_adapter(spec, 8, 0.5f, attn_fc, 32),
                                             random_adapter(spec, 16, 1.0f, projs, 33)};
  // Slots 0-2 and 4 bound to adapters 0, 1, 2 and 0, slot 3 to none; slot 2's prompt spans two chunks at 124M's shape.
  const std::vector<int> binding = {0, 1, 2, -1, 0}, prompt = {37, 1, c.n_ctx - 24, 20, 9};
  const int n_slots = static_cast<int>(binding.size());
  std::vector<std::vector<int32_t>> seq;
  for (int s = 0; s < n_slots; ++s) seq.push_back(random_tokens(prompt[s] + kSteps, V, 40 + s));
  std::vector<int> everyone(n_slots);
  std::iota(everyone.begin(), everyone.end(), 0);
  std::printf("random model, %d layers, %d channels; adapters of rank 4 (all matrices), 8 (c_attn, c_fc), 16 (two c_proj); "
              "slots bound to %d %d %d %d %d\n", L, c.n_embd, binding[0], binding[1], binding[2], binding[3], binding[4]);

  // Adds the adapters (ids 0, 1, 2) to a fresh backend and reserves n_slots slots.
  auto serve = [&](std::unique_ptr<Backend> be) {
    for (const SlotAdapter& a : adapters) be->kv_add_adapter(a.rank, a.scaling, a.modules.data(), a.factors.data(), a.factors.size());
    be->kv_reserve(n_slots);
    return be;
  };
  auto bind_all = [&](Backend& be) {
    for (int s = 0; s < n_slots; ++s) be.kv_set_adapter(s, binding[s]);
  };
  struct Kind {
    std::string name;
    DType weights;
    bool bf16;
  };
  const std::vector<Kind> kinds = {{"f32", DType::F32, false}, {"bf16", DType::F32, true}, {"f16 weights", DType::F16, false},
                                   {"bf16 weights", DType::BF16, false}, {"q8_0 weights", DType::Q8_0, false}};
  for (const Kind& k : kinds) {
    const std::string tag = "adapters " + k.name + ": ";
    check(tag + "a mixed batch", [&] {
      BackendOptions o;
      o.trainable = false;
      o.weight_dtype = k.weights;
      o.mixed_bf16 = k.bf16;
      auto make = [&](bool cuda) {
        auto be = cuda ? make_cuda_backend(c, o) : make_cpu_backend(c, o);
        be->write_params(0, params.data(), params.size(), DType::F32);
        return be;
      };
      auto be = serve(make(true));
      bind_all(*be);
      const auto mixed = run_slots(*be, seq, prompt, everyone, kSteps);
      // Each slot decoded alone, in a cache of its own.
      std::vector<std::vector<float>> alone(mixed.size(), std::vector<float>(mixed[0].size(), 0.0f));
      for (int s = 0; s < n_slots; ++s) {
        be->kv_reserve(n_slots);
        be->kv_set_adapter(s, binding[s]);
        const auto one = run_slots(*be, seq, prompt, {s}, kSteps);
        for (size_t call = 0; call < one.size(); ++call)
          std::copy_n(one[call].begin() + static_cast<std::ptrdiff_t>(s) * V, V, alone[call].begin() + static_cast<std::ptrdiff_t>(s) * V);
      }
      auto cpu = serve(make(false));
      bind_all(*cpu);
      const auto cpu_mixed = run_slots(*cpu, seq, prompt, everyone, kSteps);
      // The plain base on CUDA: what the adapters move, and the unbound slot's logits, which must not move at all.
      auto base = make(true);
      base->kv_reserve(n_slots);
      const auto plain = run_slots(*base, seq, prompt, everyone, kSteps);
      double moved = 0, unbound = 0;
      for (size_t call = 0; call < plain.size(); ++call)
        for (int s = 0; s < n_slots; ++s) {
          double& d = binding[s] == -1 ? unbound : moved;
          d = std::max(d, max_abs_diff(plain[call].data() + static_cast<size_t>(s) * V, mixed[call].data() + static_cast<size_t>(s) * V, V));
        }
      const double scale = std::max(1.0, max_abs(cpu_mixed[0].data(), cpu_mixed[0].size()));
      const double self = max_diff_calls(mixed, alone) / scale, vs_cpu = max_diff_calls(mixed, cpu_mixed) / scale;
      // float32 as tight as the base's decoding; 16 and 8 bits within their rounding, as the decode section's. Alone,
      // a slot's rows take other paths only with 8-bit weights (q8_matvec for a step of one row).
      const bool f32 = k.weights == DType::F32 && !k.bf16, q8 = k.weights == DType::Q8_0;
      const double tol = f32 ? 1e-3 : 0.1, tol_alone = f32 ? 1e-4 : q8 ? 0.1 : 1e-2;
      report(moved > 0.1 && unbound == 0, tag + "the adapters move the bound slots only",
             "max |diff| from the base " + fmt("%.3f", moved) + " bound, " + fmt("%.2e", unbound) + " unbound");
      report(self <= tol_alone, tag + "a mixed batch = each slot decoded alone",
             "max |diff| / max(1, max|logit|) " + fmt("%.2e", self));
      report(vs_cpu <= tol, tag + "CUDA = the CPU's kv_* with the same adapters", "max |diff| / max(1, max|logit|) " + fmt("%.2e", vs_cpu));
    });
  }

  check("adapters f32: bound to no slot, the base's path exactly", [&] {
    auto be = serve(cuda_model(c, params, 1, c.n_ctx, false, false, false));
    auto plain = cuda_model(c, params, 1, c.n_ctx, false, false, false);
    plain->kv_reserve(n_slots);
    const double d = max_diff_calls(run_slots(*be, seq, prompt, everyone, kSteps), run_slots(*plain, seq, prompt, everyone, kSteps));
    report(d == 0.0, "adapters f32: added but unbound, logits = a model without them", "max |diff| " + fmt("%.2e", d));
  });

  // Rebinding, removing and refusals, on CUDA and on the CPU alike.
  for (const bool cuda : {true, false}) {
    const std::string tag = std::string(cuda ? "adapters CUDA" : "adapters CPU") + ": ";
    check(tag + "rebinding and removing", [&] {
      auto be = serve(cuda ? cuda_model(c, params, 1, c.n_ctx, false, false, false) : cpu_model(c, params, 1, c.n_ctx, false));
      bind_all(*be);
      const auto first = run_slots(*be, seq, prompt, everyone, 0)[0];
      be->kv_set_adapter(0, 0);  // the binding it has: the cache stays
      be->kv_set_adapter(1, 0);  // another: emptied
      be->kv_remove_adapter(2);  // slot 2 unbound and emptied
      const bool lengths = be->kv_length(0) == prompt[0] && be->kv_length(1) == 0 && be->kv_length(2) == 0 && be->kv_length(4) == prompt[4];
      report(lengths, tag + "a binding that changes empties the slot, one that stays keeps it",
             "lengths " + std::to_string(be->kv_length(0)) + " " + std::to_string(be->kv_length(1)) + " " + std::to_string(be->kv_length(2)));
      // Slot 1 now decodes slot 0's prompt under adapter 0, slot 2 its own under none: slot 0's logits, and the base's.
      std::vector<int32_t> tokens(seq[0].begin(), seq[0].begin() + prompt[0]);
      tokens.insert(tokens.end(), seq[2].begin(), seq[2].begin() + prompt[2]);
      const std::vector<int> slots = {1, 2}, n_new = {prompt[0], prompt[2]};
      std::vector<float> logits(2 * static_cast<size_t>(V));
      be->kv_forward(2, slots.data(), n_new.data(), tokens.data(), logits.data(), KvOutput::LastLogits);
      auto base = cuda ? cuda_model(c, params, 1, c.n_ctx, false, false, false) : cpu_model(c, params, 1, c.n_ctx, false);
      base->kv_reserve(n_slots);
      const auto plain = run_slots(*base, seq, prompt, {2}, 0)[0];
      const double rebound = max_abs_diff(logits.data(), first.data(), V);
      const double removed = max_abs_diff(logits.data() + V, plain.data() + 2 * static_cast<size_t>(V), V);
      report(rebound <= 1e-4 && removed <= 1e-4, tag + "a rebound slot decodes with its new adapter, a removed one's with none",
             "max |diff| " + fmt("%.2e", rebound) + " from slot 0's, " + fmt("%.2e", removed) + " from the base's");
      const SlotAdapter& a = adapters[0];
      const int id = be->kv_add_adapter(a.rank, a.scaling, a.modules.data(), a.factors.data(), a.factors.size());
      std::vector<uint8_t> none(L * 4, 0);
      const bool refusals =
          refuses<std::out_of_range>([&] { be->kv_set_adapter(0, 2); }, "no adapter 2") &&
          refuses<std::out_of_range>([&] { be->kv_remove_adapter(2); }, "no adapter 2") &&
          refuses<std::invalid_argument>([&] { be->kv_add_adapter(0, 1.0f, a.modules.data(), a.factors.data(), a.factors.size()); }, "rank 0") &&
          refuses<std::invalid_argument>([&] { be->kv_add_adapter(kMaxServedRank + 1, 1.0f, a.modules.data(), a.factors.data(), a.factors.size()); },
                                         "rank " + std::to_string(kMaxServedRank + 1)) &&
          refuses<std::invalid_argument>([&] { be->kv_add_adapter(a.rank, 1.0f, none.data(), a.factors.data(), a.factors.size()); },
                                         "changes no layer matrix") &&
          refuses<std::invalid_argument>([&] { be->kv_add_adapter(a.rank, 1.0f, a.modules.data(), a.factors.data(), a.factors.size() - 1); },
                                         "factors has " + std::to_string(a.factors.size() - 1) + " values");
      report(id == 3 && refusals, tag + "ids never reused; removed ids, ranks, modules and factor counts refused",
             "new id " + std::to_string(id) + (refusals ? "" : ", a refusal MISSING or worded otherwise"));
    });
  }
}

// ---- section: decode steps as CUDA graphs ----

// A backend made with DIXIE_CUDA_GRAPHS on (its decode steps run as graphs) or off, whatever the environment says.
std::unique_ptr<Backend> with_decode_graphs(bool on, const std::function<std::unique_ptr<Backend>()>& make) {
  Switches graphs({"DIXIE_CUDA_GRAPHS"}, on);
  return make();
}

// The same script of kv_step calls on a backend that runs decode steps as graphs and on one that does not: the
// graphs launch the same kernels over the same memory, so tokens, RNG states and logits must agree exactly. The
// script changes everything a graph must not have baked in: positions, the slots and their order, a slot cut
// back, an adapter bound to a slot, and the sampler's buffers moving under the graphs (a sample() with a long
// history); it also has steps that must run eagerly (a prefill, logits asked for, a subset of the rows sampled).
void section_graphs(const Shape& shape) {
  const GPT2Config c = shape.config;
  const ModelSpec spec(c);
  const int V = c.vocab_size;
  const std::vector<float> params = random_params(spec, 71);
  const SlotAdapter adapter = random_adapter(spec, 4, 2.0f, std::vector<uint8_t>(c.n_layer * 4, 1), 72);
  for (const bool bf16 : {false, true}) {
    const std::string name = std::string("graphs ") + (bf16 ? "bf16" : "f32") + ": decode steps as graphs = eager steps";
    check(name, [&] {
      const auto make = [&] { return cuda_model(c, params, 1, c.n_ctx, bf16, false, false); };
      std::unique_ptr<Backend> eager = with_decode_graphs(false, make), graphed = with_decode_graphs(true, make);
      Backend* both[2] = {eager.get(), graphed.get()};
      const int32_t bias_tokens[2] = {5, 9};
      const float bias_values[2] = {-100.0f, 4.0f};
      SamplingParams settings[4] = {{0.0f, 0, 1.0f, 0.5f}, {0.9f, 40, 0.9f, 0.85f}, {1.0f, 0, 1.0f, 0.0f, 2, bias_tokens, bias_values},
                                    {0.7f, 20, 1.0f, 0.0f}};
      // A grammar's mask on the last row (every third token): the graphs read it from the row arrays' copy.
      std::vector<uint32_t> every_third((V + 31) / 32, 0u);
      for (int k = 0; k < V; k += 3) every_third[k >> 5] |= 1u << (k & 31);
      settings[3].allowed = every_third.data();
      settings[3].allowed_words = static_cast<int>(every_third.size());
      std::vector<uint64_t> rng[2];
      Rng seeds{73};
      for (int i = 0; i < 8; ++i) rng[0].push_back(seeds.next());
      rng[1] = rng[0];
      for (Backend* be : both) {
        be->kv_reserve(4);
        be->kv_set_adapter(3, be->kv_add_adapter(adapter.rank, adapter.scaling, adapter.modules.data(), adapter.factors.data(),
                                                 adapter.factors.size()));
      }
      std::vector<int32_t> next(4, 0);
      int steps = 0, differ = 0;
      double worst = 0;
      // One kv_step on both: slots[i] is fed feed[i] (its next token when empty); the entries `rows` are sampled.
      auto step = [&](const std::vector<int>& slots, const std::vector<std::vector<int32_t>>& feed, const std::vector<int>& rows,
                      bool want_logits) {
        const int n = static_cast<int>(slots.size()), m = static_cast<int>(rows.size());
        std::vector<int> n_new;
        std::vector<int32_t> tokens;
        for (int i = 0; i < n; ++i) {
          const std::vector<int32_t> f = feed.empty() ? std::vector<int32_t>{next[slots[i]]} : feed[i];
          n_new.push_back(static_cast<int>(f.size()));
          tokens.insert(tokens.end(), f.begin(), f.end());
        }
        std::vector<SamplingParams> sp;
        for (int r : rows) sp.push_back(settings[slots[r]]);
        std::vector<int32_t> out[2];
        std::vector<float> logits[2];
        for (int b = 0; b < 2; ++b) {
          std::vector<uint64_t> rs;
          for (int r : rows) rs.insert(rs.end(), rng[b].begin() + 2 * slots[r], rng[b].begin() + 2 * slots[r] + 2);
          out[b].resize(m);
          if (want_logits) logits[b].resize(static_cast<size_t>(m) * V);
          both[b]->kv_step(n, slots.data(), n_new.data(), tokens.data(), m, rows.data(), sp.data(), rs.data(), out[b].data(),
                           want_logits ? logits[b].data() : nullptr);
          for (int j = 0; j < m; ++j) std::copy_n(rs.begin() + 2 * j, 2, rng[b].begin() + 2 * slots[rows[j]]);
        }
        if (want_logits) worst = std::max(worst, max_abs_diff(logits[0].data(), logits[1].data(), logits[0].size()));
        for (int j = 0; j < m; ++j) {
          differ += out[0][j] != out[1][j];
          next[slots[rows[j]]] = out[0][j];
        }
        ++steps;
      };
      const std::vector<int> all = {0, 1, 2};
      step(all, {random_tokens(9, V, 74), random_tokens(4, V, 75), random_tokens(6, V, 76)}, {0, 1, 2}, false);
      for (int k = 0; k < 6; ++k) step(all, {}, {0, 1, 2}, false);  // batch 3: eager, captured, then replayed
      for (Backend* be : both) be->kv_truncate(1, 2);
      for (int k = 0; k < 3; ++k) step({2, 0}, {}, {0, 1}, false);  // batch 2 in another order
      step({3}, {random_tokens(5, V, 77)}, {0}, false);              // slot 3, bound to the adapter, prefilled
      for (int k = 0; k < 4; ++k) step({0, 1, 2, 3}, {}, {0, 1, 2, 3}, false);  // batch 4, one row adapted
      step(all, {}, {0, 1, 2}, true);  // logits asked for: eager
      step(all, {}, {0, 2}, false);    // a row not sampled: eager (slot 1 keeps its last token)
      // A draw with a long history moves the sampler's buffers: the graphs over the old ones are captured again.
      const std::vector<int32_t> history = random_tokens(static_cast<size_t>(c.n_ctx), V, 78);
      Rng noise{79};
      std::vector<float> row(V);
      for (float& x : row) x = static_cast<float>(3.0 * noise.normal());
      const int32_t* hp = history.data();
      const int32_t hl = static_cast<int32_t>(history.size());
      int32_t drawn[2];
      for (int b = 0; b < 2; ++b) both[b]->sample(1, row.data(), &settings[1], rng[b].data(), &hp, &hl, &drawn[b]);
      differ += drawn[0] != drawn[1];
      for (int k = 0; k < 3; ++k) step({0, 1, 2, 3}, {}, {0, 1, 2, 3}, false);
      // A row whose biases grow by one a step, as the additive penalties (lib/generate/sequence.ts) make them: the
      // bias buffer outgrows itself and moves under the graphs.
      int32_t growing_tokens[8];
      float growing_values[8];
      for (int k = 0; k < 8; ++k) {
        growing_tokens[k] = 100 + k;
        growing_values[k] = -1.5f * static_cast<float>(k + 1);
        settings[2] = {1.0f, 0, 1.0f, 0.0f, k + 1, growing_tokens, growing_values};
        step({0, 1, 2, 3}, {}, {0, 1, 2, 3}, false);
      }
      const auto* cuda = dynamic_cast<cuda::CudaBackend*>(graphed.get());
      // Graph launches: batch 3's steps 2-6, batch 2's 2-3, batch 4's 2-4 and, after the sampler moved, all 3 of its
      // next steps and the 8 with growing biases (the shape is warm already).
      const int64_t launches = cuda->decode_graph_launches(), expected = 5 + 2 + 3 + 3 + 8;
      bool lengths = true;
      for (int s = 0; s < 4; ++s) lengths = lengths && eager->kv_length(s) == graphed->kv_length(s);
      report(differ == 0 && rng[0] == rng[1] && worst == 0 && lengths && launches == expected, name,
             std::to_string(steps) + " steps: " + std::to_string(differ) + " tokens differ, RNG states " +
                 (rng[0] == rng[1] ? "equal" : "DIFFER") + ", logits max |diff| " + fmt("%.2e", worst) +
                 (lengths ? "" : ", slot lengths DIFFER") + ", " + std::to_string(launches) + " graph launches (expected " +
                 std::to_string(expected) + ")");
    });
  }
}

// ---- section: attention's tensor-core kernels ----

// One head's attention in float64 from bf16 inputs: out and lse for its rows, and dq, dk, dv from dout.
struct HeadReference {
  std::vector<double> out, lse, dq, dk, dv;  // [T, hs] (lse [T])
};

HeadReference attention_reference(const std::vector<uint16_t>& qkv, const std::vector<uint16_t>& dout, int b, int h,
                                  int T, int C, int NH) {
  const int hs = C / NH;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  auto at = [&](const std::vector<uint16_t>& a, int64_t row_len, int t, int col) {
    return static_cast<double>(bf16_to_f32(a[(static_cast<int64_t>(b) * T + t) * row_len + col]));
  };
  auto q = [&](int t, int d) { return at(qkv, 3 * C, t, h * hs + d); };
  auto k = [&](int t, int d) { return at(qkv, 3 * C, t, C + h * hs + d); };
  auto v = [&](int t, int d) { return at(qkv, 3 * C, t, 2 * C + h * hs + d); };
  auto g = [&](int t, int d) { return at(dout, C, t, h * hs + d); };
  HeadReference r;
  r.out.assign(static_cast<size_t>(T) * hs, 0.0);
  r.lse.assign(T, 0.0);
  r.dq = r.dk = r.dv = r.out;
  std::vector<double> p(T), dp(T);
  for (int i = 0; i < T; ++i) {
    double mx = -INFINITY;
    for (int j = 0; j <= i; ++j) {
      double s = 0;
      for (int d = 0; d < hs; ++d) s += q(i, d) * k(j, d);
      p[j] = s * scale;
      mx = std::max(mx, p[j]);
    }
    double sum = 0;
    for (int j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - mx));
    r.lse[i] = mx + std::log(sum);
    double delta = 0;
    for (int d = 0; d < hs; ++d) {
      double o = 0;
      for (int j = 0; j <= i; ++j) o += p[j] / sum * v(j, d);
      r.out[static_cast<size_t>(i) * hs + d] = o;
      delta += o * g(i, d);
    }
    for (int j = 0; j <= i; ++j) {
      p[j] /= sum;
      double s = 0;
      for (int d = 0; d < hs; ++d) s += g(i, d) * v(j, d);
      dp[j] = p[j] * (s - delta) * scale;  // dS, scaled
      for (int d = 0; d < hs; ++d) {
        r.dq[static_cast<size_t>(i) * hs + d] += dp[j] * k(j, d);
        r.dk[static_cast<size_t>(j) * hs + d] += dp[j] * q(i, d);
        r.dv[static_cast<size_t>(j) * hs + d] += p[j] * g(i, d);
      }
    }
  }
  return r;
}

// A kernel set's forward and backward on the same inputs, copied back.
struct AttentionRun {
  std::vector<uint16_t> out, dqkv;
  std::vector<float> lse;
};

struct AttentionBuffers {
  int B, T, C, NH;
  cuda::DeviceArray<cuda::bf16> qkv, dout, out, dqkv;
  cuda::DeviceArray<float> lse, delta;
  AttentionBuffers(int B_, int T_, int C_, int NH_) : B(B_), T(T_), C(C_), NH(NH_) {
    const size_t N = static_cast<size_t>(B) * T;
    qkv.allocate(N * 3 * C, "qkv");
    dout.allocate(N * C, "dout");
    out.allocate(N * C, "out");
    dqkv.allocate(N * 3 * C, "dqkv");
    lse.allocate(static_cast<size_t>(B) * NH * T, "lse");
    delta.allocate(static_cast<size_t>(B) * NH * T, "delta");
  }
  void forward(cuda::AttentionTiles tiles, cudaStream_t stream) {
    cuda::attention_forward(out.data(), lse.data(), qkv.data(), B, T, C, NH, tiles, stream);
  }
  void backward(cuda::AttentionTiles tiles, cudaStream_t stream) {
    cuda::attention_backward(dqkv.data(), delta.data(), dout.data(), qkv.data(), out.data(), lse.data(), B, T, C, NH,
                             tiles, stream);
  }
};

template <typename T>
std::vector<T> to_host(const void* device, size_t n, cudaStream_t stream) {
  std::vector<T> h(n);
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(h.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost, stream));
  DIXIE_CUDA_CHECK(cudaStreamSynchronize(stream));
  return h;
}

// Where the wgmma kernels' part (out, lse, dq, dk or dv: [heads][T][width]) differs from float64, printed when its
// check fails: what one run on a card must tell the emulator's next session. By 64 rows (one consumer warpgroup's
// own rows: a wrong warpgroup, ring stage or last block shows as a pattern of tiles) and by 8 columns (16 bytes,
// the unit the 128-byte swizzle moves: a wrong swizzle shows as columns), then the worst value.
void print_where_it_differs(const char* name, const std::vector<float>& got, const std::vector<float>& mma,
                            const std::vector<float>& want, const std::vector<std::pair<int, int>>& heads, int T, int width) {
  const int tiles = (T + 63) / 64, chunks = width / 8;
  std::vector<double> chunk_d(chunks), chunk_r(chunks);
  size_t worst = 0;
  double worst_e = -1;
  for (size_t k = 0; k < heads.size(); ++k) {
    std::string by_tile;
    for (int tile = 0; tile < tiles; ++tile) {
      double d = 0, r = 0;
      for (int t = tile * 64; t < std::min(T, tile * 64 + 64); ++t)
        for (int j = 0; j < width; ++j) {
          const size_t i = (k * T + t) * width + j;
          const double e = got[i] - want[i];
          d += e * e;
          r += want[i] * want[i];
          if (chunks > 0) {
            chunk_d[j / 8] += e * e;
            chunk_r[j / 8] += want[i] * want[i];
          }
          if (!(std::fabs(e) <= worst_e)) {  // a NaN is the worst
            worst_e = std::isfinite(e) ? std::fabs(e) : HUGE_VAL;
            worst = i;
          }
        }
      by_tile += " " + fmt("%.1e", rel_from_squares(d, r));
    }
    std::printf("      %s, batch %d head %d, relative L2 by 64 rows:%s\n", name, heads[k].first, heads[k].second, by_tile.c_str());
  }
  if (chunks > 1) {
    std::string by_chunk;
    for (int c = 0; c < chunks; ++c) by_chunk += " " + fmt("%.1e", rel_from_squares(chunk_d[c], chunk_r[c]));
    std::printf("      %s, relative L2 by 8 columns:%s\n", name, by_chunk.c_str());
  }
  const size_t row = worst / width;
  std::printf("      %s, worst at batch %d head %d row %zu column %zu: %g where float64 gives %g and mma.sync %g\n", name,
              heads[row / T].first, heads[row / T].second, row % T, worst % width, got[worst], want[worst], mma[worst]);
}

void section_attention(bool small) {
  if (!cuda::wgmma_attention_available()) {
    std::printf("no wgmma attention here (it needs an sm_90a build on compute capability 9.0): nothing to check\n");
    return;
  }
  const int B = 2, T = small ? 300 : 1024, NH = small ? 2 : 12, hs = 64, C = NH * hs;
  std::printf("B x T = %d x %d, %d heads of 64\n", B, T, NH);
  AttentionBuffers buf(B, T, C, NH);
  Rng rng{21};
  std::vector<uint16_t> qkv(buf.qkv.size()), dout(buf.dout.size());
  for (auto& x : qkv) x = f32_to_bf16(static_cast<float>(rng.normal()));
  for (auto& x : dout) x = f32_to_bf16(static_cast<float>(rng.normal()));
  cuda::CudaStream stream;
  const cudaStream_t st = stream.get();
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(buf.qkv.data(), qkv.data(), buf.qkv.bytes(), cudaMemcpyHostToDevice, st));
  DIXIE_CUDA_CHECK(cudaMemcpyAsync(buf.dout.data(), dout.data(), buf.dout.bytes(), cudaMemcpyHostToDevice, st));
  auto run = [&](cuda::AttentionTiles tiles) {
    DIXIE_CUDA_CHECK(cudaMemsetAsync(buf.out.data(), 0xff, buf.out.bytes(), st));  // NaN wherever a kernel fails to write
    DIXIE_CUDA_CHECK(cudaMemsetAsync(buf.dqkv.data(), 0xff, buf.dqkv.bytes(), st));
    DIXIE_CUDA_CHECK(cudaMemsetAsync(buf.lse.data(), 0xff, buf.lse.bytes(), st));  // not the other kernel set's
    buf.forward(tiles, st);
    buf.backward(tiles, st);
    return AttentionRun{to_host<uint16_t>(buf.out.data(), buf.out.size(), st),
                        to_host<uint16_t>(buf.dqkv.data(), buf.dqkv.size(), st), to_host<float>(buf.lse.data(), buf.lse.size(), st)};
  };
  const AttentionRun mma = run(cuda::AttentionTiles::kMma), wgmma = run(cuda::AttentionTiles::kWgmma);

  // One part (out, or dq, dk, dv of dqkv) of the heads checked, as float: [heads][T][hs].
  std::vector<std::pair<int, int>> heads;
  if (small)
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < NH; ++h) heads.push_back({b, h});
  else
    heads = {{0, 0}, {B - 1, NH - 1}};
  auto part = [&](const std::vector<uint16_t>& a, int64_t row_len, int offset) {
    std::vector<float> v;
    for (auto [b, h] : heads)
      for (int t = 0; t < T; ++t)
        for (int d = 0; d < hs; ++d) v.push_back(bf16_to_f32(a[(static_cast<int64_t>(b) * T + t) * row_len + offset + h * hs + d]));
    return v;
  };
  std::vector<float> ref_out, ref_dq, ref_dk, ref_dv, ref_lse;
  for (auto [b, h] : heads) {
    const HeadReference r = attention_reference(qkv, dout, b, h, T, C, NH);
    ref_out.insert(ref_out.end(), r.out.begin(), r.out.end());
    ref_dq.insert(ref_dq.end(), r.dq.begin(), r.dq.end());
    ref_dk.insert(ref_dk.end(), r.dk.begin(), r.dk.end());
    ref_dv.insert(ref_dv.end(), r.dv.begin(), r.dv.end());
    ref_lse.insert(ref_lse.end(), r.lse.begin(), r.lse.end());
  }
  auto lse_part = [&](const std::vector<float>& lse) {
    std::vector<float> v;
    for (auto [b, h] : heads) v.insert(v.end(), lse.begin() + (static_cast<int64_t>(b) * NH + h) * T, lse.begin() + (static_cast<int64_t>(b) * NH + h + 1) * T);
    return v;
  };
  // Both kernel sets against float64 (bf16 inputs and outputs: about 0.3% each), and against each other.
  struct Part {
    const char* name;
    std::vector<float> mma, wgmma, ref;
  };
  const std::vector<Part> parts = {
      {"out", part(mma.out, C, 0), part(wgmma.out, C, 0), ref_out},
      {"dq", part(mma.dqkv, 3 * C, 0), part(wgmma.dqkv, 3 * C, 0), ref_dq},
      {"dk", part(mma.dqkv, 3 * C, C), part(wgmma.dqkv, 3 * C, C), ref_dk},
      {"dv", part(mma.dqkv, 3 * C, 2 * C), part(wgmma.dqkv, 3 * C, 2 * C), ref_dv},
  };
  for (const Part& p : parts) {
    const double e_mma = rel_l2(p.mma.data(), p.ref.data(), p.ref.size());
    const double e_wgmma = rel_l2(p.wgmma.data(), p.ref.data(), p.ref.size());
    const double e_both = rel_l2(p.wgmma.data(), p.mma.data(), p.ref.size());
    const bool ok = e_wgmma <= 1e-2 && e_both <= 1e-2;
    report(ok, std::string("attention ") + p.name + ": wgmma vs float64 and mma.sync",
           "relative L2 " + fmt("%.2e", e_wgmma) + " (mma.sync " + fmt("%.2e", e_mma) + "), to mma.sync " + fmt("%.2e", e_both));
    if (!ok) print_where_it_differs(p.name, p.wgmma, p.mma, p.ref, heads, T, hs);
  }
  const std::vector<float> lse_w = lse_part(wgmma.lse), lse_m = lse_part(mma.lse);
  const double dl = max_abs_diff(lse_w.data(), ref_lse.data(), ref_lse.size());
  const bool lse_ok = dl <= 2e-3;
  report(lse_ok, "attention lse: wgmma vs float64", "max |diff| " + fmt("%.2e", dl) + " (mma.sync " +
                                                            fmt("%.2e", max_abs_diff(lse_m.data(), ref_lse.data(), ref_lse.size())) + ")");
  if (!lse_ok) print_where_it_differs("lse", lse_w, lse_m, ref_lse, heads, T, 1);
  // Every value written, and finite, over all heads.
  size_t bad = 0;
  for (uint16_t x : wgmma.dqkv) bad += !std::isfinite(bf16_to_f32(x));
  for (uint16_t x : wgmma.out) bad += !std::isfinite(bf16_to_f32(x));
  for (float x : wgmma.lse) bad += !std::isfinite(x);
  report(bad == 0, "attention: every output written and finite", std::to_string(bad) + " not");
  if (small) return;

  // Times at the training benchmark's 8 x 1024 (12 heads), each kernel set after a warm-up.
  check("attention: times at 8 x 1024", [&] {
    AttentionBuffers big(8, 1024, 768, 12);
    DIXIE_CUDA_CHECK(cudaMemsetAsync(big.qkv.data(), 0, big.qkv.bytes(), st));
    DIXIE_CUDA_CHECK(cudaMemsetAsync(big.dout.data(), 0, big.dout.bytes(), st));
    cudaEvent_t e0, e1;
    DIXIE_CUDA_CHECK(cudaEventCreate(&e0));
    DIXIE_CUDA_CHECK(cudaEventCreate(&e1));
    auto time_ms = [&](const std::function<void()>& work) {
      work();
      DIXIE_CUDA_CHECK(cudaEventRecord(e0, st));
      for (int i = 0; i < 20; ++i) work();
      DIXIE_CUDA_CHECK(cudaEventRecord(e1, st));
      DIXIE_CUDA_CHECK(cudaStreamSynchronize(st));
      float ms = 0;
      DIXIE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      return ms / 20;
    };
    std::string detail;
    // causal: half of the 4 B T^2 C multiply-adds of the forward's two products, 2.5x that backward
    const double flops = 2.0 * 2 * 8 * 1024.0 * 1024.0 * 768 / 2;
    for (auto tiles : {cuda::AttentionTiles::kMma, cuda::AttentionTiles::kWgmma}) {
      const float f = time_ms([&] { big.forward(tiles, st); });
      const float b = time_ms([&] { big.backward(tiles, st); });
      detail += std::string(tiles == cuda::AttentionTiles::kMma ? "mma.sync" : "; wgmma") + " forward " + fmt("%.3f", f) +
                " ms (" + fmt("%.0f", flops / f / 1e9) + " TFLOP/s), backward " + fmt("%.3f", b) + " ms (" +
                fmt("%.0f", 2.5 * flops / b / 1e9) + " TFLOP/s)";
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    std::printf("attention times at 8 x 1024, 12 heads: %s\n", detail.c_str());
  });
}

// ---- section: the sampler ----

std::vector<int32_t> sample_with(Backend& be, const std::vector<float>& logits, const std::vector<SamplingParams>& sp,
                                 std::vector<uint64_t>& rng, const std::vector<std::vector<int32_t>>& hist) {
  const int n = static_cast<int>(sp.size());
  std::vector<const int32_t*> hp(n);
  std::vector<int32_t> hl(n), out(n);
  for (int i = 0; i < n; ++i) {
    hp[i] = hist[i].data();
    hl[i] = static_cast<int32_t>(hist[i].size());
  }
  be.sample(n, logits.data(), sp.data(), rng.data(), hp.data(), hl.data(), out.data());
  return out;
}

void section_sampler(const Shape& shape) {
  // Exact agreement on the model's vocabulary.
  {
    const GPT2Config c = shape.config;
    const int V = c.vocab_size, n = shape.sampler_rows;
    BackendOptions o;
    o.trainable = false;
    auto gpu = make_cuda_backend(c, o);
    auto cpu = make_cpu_backend(c, o);
    Rng rng{7};
    std::vector<float> logits(static_cast<size_t>(n) * V);
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>(2.0 * rng.normal());
    // Ties, as bf16 logits have them: every fourth row rounded to bf16.
    for (int r = 0; r < n; r += 4)
      for (int k = 0; k < V; ++k) logits[static_cast<size_t>(r) * V + k] = bf16_to_f32(f32_to_bf16(logits[static_cast<size_t>(r) * V + k]));
    std::vector<std::vector<int32_t>> hist(n);
    for (int r = 0; r < n; ++r)
      for (int k = 0; k < 200; ++k) hist[r].push_back(static_cast<int32_t>(rng.next() % 300));  // repeats included
    auto seeds = [&](uint64_t base) {
      std::vector<uint64_t> s(2 * n);
      Rng r{base};
      for (auto& x : s) x = r.next();
      return s;
    };
    auto compare = [&](const std::string& name, SamplingParams p, double need) {
      check(name, [&] {
        std::vector<SamplingParams> sp(n, p);
        for (int r = 0; r < n; r += 2) sp[r].penalize = p.penalize > 0 ? 0.0f : 0.85f;  // half the rows penalised
        std::vector<uint64_t> rg = seeds(11), rc = seeds(11);
        const std::vector<int32_t> tg = sample_with(*gpu, logits, sp, rg, hist), tc = sample_with(*cpu, logits, sp, rc, hist);
        int same = 0, outside = 0;
        for (int r = 0; r < n; ++r) {
          same += tg[r] == tc[r];
          if (p.allowed != nullptr) outside += !p.allows(tg[r]);
        }
        const double frac = static_cast<double>(same) / n;
        report(frac >= need && rg == rc && outside == 0, name,
               std::to_string(same) + "/" + std::to_string(n) + " tokens as the CPU" + (rg == rc ? ", RNG states equal" : ", RNG states DIFFER") +
                   (p.allowed != nullptr ? ", " + std::to_string(outside) + " outside the mask" : ""));
      });
    };
    compare("sampler: greedy = CPU", SamplingParams{0.0f, 0, 1.0f, 0.85f}, 1.0);
    compare("sampler: top_k 1 = argmax = CPU", SamplingParams{0.8f, 1, 1.0f, 0.0f}, 1.0);
    compare("sampler: temperature 1 = CPU", SamplingParams{1.0f, 0, 1.0f, 0.0f}, 0.99);
    compare("sampler: top_p 0.9 = CPU", SamplingParams{0.9f, 0, 0.9f, 0.85f}, 0.99);
    compare("sampler: top_k 40 = CPU", SamplingParams{0.8f, 40, 1.0f, 0.0f}, 0.99);
    compare("sampler: top_k 40 + top_p 0.95 = CPU", SamplingParams{0.8f, 40, 0.95f, 0.85f}, 0.99);
    // More candidates than the GPU sampler compacts after top-k (1024): it walks the whole row, as without top-k
    // (which a vocabulary of 1100 or fewer, --small's, has).
    const int many = std::min(1100, V);
    compare("sampler: top_k " + std::to_string(many) + " + top_p 0.95 = CPU", SamplingParams{0.8f, many, 0.95f, 0.0f}, 0.99);
    // Logit biases, added after the penalty: a ban, pushes up and down.
    const int32_t bias_tokens[4] = {1, 5, 17, V - 1};
    const float bias_values[4] = {-100.0f, 4.0f, -2.5f, 3.0f};
    compare("sampler: greedy + logit biases = CPU", SamplingParams{0.0f, 0, 1.0f, 0.85f, 4, bias_tokens, bias_values}, 1.0);
    compare("sampler: top_k 40 + top_p 0.95 + logit biases = CPU", SamplingParams{0.8f, 40, 0.95f, 0.85f, 4, bias_tokens, bias_values}, 0.99);
    // A grammar's mask: a sparse one (fewer tokens than top-k keeps, none of them likely) and every other token.
    std::vector<uint32_t> sparse((V + 31) / 32, 0u), dense((V + 31) / 32, 0u);
    for (int k = 3; k < V; k += 97) sparse[k >> 5] |= 1u << (k & 31);
    for (int k = 0; k < V; k += 2) dense[k >> 5] |= 1u << (k & 31);
    const auto masked = [](SamplingParams p, const std::vector<uint32_t>& words) {
      p.allowed = words.data();
      p.allowed_words = static_cast<int>(words.size());
      return p;
    };
    compare("sampler: greedy + a sparse mask = CPU", masked(SamplingParams{0.0f, 0, 1.0f, 0.85f}, sparse), 1.0);
    compare("sampler: temperature 1 + a sparse mask = CPU", masked(SamplingParams{1.0f, 0, 1.0f, 0.0f}, sparse), 0.99);
    compare("sampler: top_k 40 + top_p 0.95 + a sparse mask = CPU", masked(SamplingParams{0.8f, 40, 0.95f, 0.85f}, sparse), 0.99);
    compare("sampler: top_k 40 + top_p 0.95 + logit biases + every other token = CPU",
            masked(SamplingParams{0.8f, 40, 0.95f, 0.85f, 4, bias_tokens, bias_values}, dense), 0.99);
    // Min-p, alone (its candidates ranked by the GPU, unlike the whole row's), after top-k and before top-p, and
    // so high at a low temperature that only the most likely token (or those tied with it) is left.
    compare("sampler: min_p 0.05 = CPU", SamplingParams{1.0f, 0, 1.0f, 0.0f, 0, nullptr, nullptr, 0.05f}, 0.99);
    compare("sampler: top_k 40 + min_p 0.1 + top_p 0.9 = CPU", SamplingParams{0.8f, 40, 0.9f, 0.85f, 0, nullptr, nullptr, 0.1f}, 0.99);
    compare("sampler: min_p 0.9 at temperature 0.05 = CPU", SamplingParams{0.05f, 0, 1.0f, 0.0f, 0, nullptr, nullptr, 0.9f}, 1.0);
  }
  // The distribution, on a small vocabulary: top-k 40 with top-p 0.95 over one row, many draws.
  check("sampler: top_k 40 + top_p 0.95 distribution", [&] {
    GPT2Config c;
    c.n_layer = 1;
    c.n_head = 1;
    c.n_embd = 16;
    c.n_ctx = 16;
    c.vocab_size = 256;
    const int V = c.vocab_size, n = 20000;
    BackendOptions o;
    o.trainable = false;
    auto gpu = make_cuda_backend(c, o);
    Rng rng{9};
    std::vector<float> row(V);
    for (auto& x : row) x = static_cast<float>(1.5 * rng.normal());
    std::vector<float> logits(static_cast<size_t>(n) * V);
    for (int r = 0; r < n; ++r) std::copy(row.begin(), row.end(), logits.begin() + static_cast<std::ptrdiff_t>(r) * V);
    const SamplingParams p{0.9f, 40, 0.95f, 0.0f};
    // The kept set and its probabilities, computed here in double: most likely first, top 40, then the nucleus.
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    std::vector<double> prob(V, 0.0);
    double total = 0;
    for (int i = 0; i < 40; ++i) total += std::exp((row[order[i]] - row[order[0]]) / 0.9);
    double cum = 0;
    int kept = 0;
    for (; kept < 40;) {
      cum += std::exp((row[order[kept]] - row[order[0]]) / 0.9);
      ++kept;
      if (cum >= 0.95 * total) break;
    }
    for (int i = 0; i < kept; ++i) prob[order[i]] = std::exp((row[order[i]] - row[order[0]]) / 0.9) / cum;
    std::vector<uint64_t> rg(2 * static_cast<size_t>(n));
    Rng seeds{13};
    for (auto& x : rg) x = seeds.next();
    const std::vector<std::vector<int32_t>> hist(n);
    const std::vector<SamplingParams> sp(n, p);
    const std::vector<int32_t> tg = sample_with(*gpu, logits, sp, rg, hist);
    std::vector<double> freq(V, 0.0);
    int outside = 0;
    for (int32_t t : tg) {
      freq[t] += 1.0 / n;
      if (prob[t] == 0.0) ++outside;
    }
    double tv = 0;
    for (int k = 0; k < V; ++k) tv += 0.5 * std::fabs(freq[k] - prob[k]);
    report(outside == 0 && tv <= 0.05, "sampler: top_k 40 + top_p 0.95 distribution",
           std::to_string(kept) + " tokens kept, " + std::to_string(outside) + " draws outside, total variation " + fmt("%.4f", tv));
  });
}

// ---- section: benchmarks ----

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Row {
  std::string what, setting, result;
};

// bf16 dense tensor-core peak of the card, for MFU (0: unknown)
double peak_flops(const std::string& name) {
  if (name.find("H100") != std::string::npos || name.find("H200") != std::string::npos || name.find("H800") != std::string::npos)
    return 989e12;
  if (name.find("A100") != std::string::npos || name.find("A800") != std::string::npos) return 312e12;
  return 0;
}

Row bench_train(const GPT2Config& c, const std::vector<float>& params, int B, int T, bool bf16, int warmup, int steps,
                const std::string& device, const LoraShape& lora = {}, DType weights = DType::F32, bool recompute = false) {
  const ModelSpec spec(c, lora);
  auto be = cuda_model(c, params, B, T, bf16, recompute, true, lora, 0.0f, weights);
  const std::vector<int32_t> x = random_tokens(static_cast<size_t>(B) * T, c.vocab_size, 21), y = random_tokens(static_cast<size_t>(B) * T, c.vocab_size, 22);
  for (int i = 0; i < warmup; ++i) {
    be->forward(x.data(), y.data(), B, T, nullptr, {});
    be->backward();
    be->step(adamw(1e-4f));
  }
  // forward and step end in a synchronisation; backward is timed to the end of its work on the stream
  cudaStream_t stream = dynamic_cast<cuda::CudaBackend&>(*be).stream();
  double t_forward = 0, t_backward = 0, t_step = 0;
  float loss = 0;
  for (int i = 0; i < steps; ++i) {
    auto t = std::chrono::steady_clock::now();
    loss = be->forward(x.data(), y.data(), B, T, nullptr, {});
    t_forward += seconds_since(t);
    t = std::chrono::steady_clock::now();
    be->backward();
    cudaStreamSynchronize(stream);
    t_backward += seconds_since(t);
    t = std::chrono::steady_clock::now();
    be->step(adamw(1e-4f));
    t_step += seconds_since(t);
  }
  const double dt = (t_forward + t_backward + t_step) / steps;
  const double tok_s = B * T / dt;
  const double flops_per_token = 6.0 * spec.num_params() + 6.0 * c.n_layer * c.n_embd * T;  // llm.c's estimate
  const double peak = peak_flops(device);
  std::string mfu = peak > 0 && lora.rank == 0 ? ", MFU " + fmt("%.1f", 100.0 * tok_s * flops_per_token / peak) + "%" : "";
  if (lora.rank > 0 || recompute) {
    const MemoryReport m = be->memory();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    mfu += ", parameters " + fmt("%.0f", m.params / 1048576.0) + " MiB, all " +
           fmt("%.0f", (m.params + m.grads + m.optimizer + m.activations) / 1048576.0) + " MiB (device memory in use " +
           fmt("%.1f", (total_b - free_b) / 1073741824.0) + " GiB)";
  }
  const char* stored = weights == DType::F16 ? "f16" : weights == DType::BF16 ? "bf16" : weights == DType::Q8_0 ? "q8_0" : "f32";
  return {"train " + fmt("%.0f", ModelSpec(c).num_params() / 1e6) + "M " + (bf16 ? "bf16" : "f32") +
              (recompute ? " recompute" : "") + (lora.rank > 0 ? " LoRA r" + std::to_string(lora.rank) + " over " + stored : std::string()),
          std::to_string(B) + " x " + std::to_string(T),
          fmt("%.0f", tok_s) + " tok/s, " + fmt("%.1f", dt * 1e3) + " ms/step" + mfu + " (forward " +
              fmt("%.1f", 1e3 * t_forward / steps) + " + backward " + fmt("%.1f", 1e3 * t_backward / steps) + " + step " +
              fmt("%.1f", 1e3 * t_step / steps) + " ms; loss " + fmt("%.3f", loss) + ")"};
}

// One training step after two warm-up steps, so the profiler sees neither allocation nor cuBLASLt's first-call work.
void section_profile() {
  const GPT2Config c = gpt2_124m();
  const int B = 8, T = 1024;
  auto be = cuda_model(c, random_params(ModelSpec(c), 31), B, T, true);
  const std::vector<int32_t> x = random_tokens(static_cast<size_t>(B) * T, c.vocab_size, 21), y = random_tokens(static_cast<size_t>(B) * T, c.vocab_size, 22);
  auto train_step = [&] {
    be->forward(x.data(), y.data(), B, T, nullptr, {});
    be->backward();
    be->step(adamw(1e-4f));
  };
  train_step();
  train_step();
  cudaDeviceSynchronize();
  cudaProfilerStart();
  train_step();
  cudaDeviceSynchronize();
  cudaProfilerStop();
  report(cudaGetLastError() == cudaSuccess, "profile: one training step", "bf16 8 x 1024");
}

// The largest multiple of 8 sequences of T tokens whose training fits in the device's free memory, or in
// `within` bytes of it where that is less.
int largest_batch(const GPT2Config& c, int T, bool bf16, bool recompute = false, size_t within = SIZE_MAX) {
  const ModelSpec spec(c);
  size_t per_row = 0, fixed = 0;
  {
    BackendOptions o;
    o.max_batch = 8;
    o.max_seq = T;
    o.mixed_bf16 = bf16;
    o.recompute = recompute;
    auto be = make_cuda_backend(c, o);
    const MemoryReport m = be->memory();
    per_row = m.activations / (8 * static_cast<size_t>(T));
    fixed = m.params + m.grads + m.optimizer;
  }
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  free_b = std::min(free_b, within);
  const size_t margin = 2ull << 30;  // cuBLASLt workspace, the context, fragmentation
  int B = static_cast<int>((free_b - std::min(free_b, fixed + margin)) / (per_row * T));
  B = std::max(8, B / 8 * 8);
  return B;
}

void section_bench(bool train_only) {
  const GPT2Config c = gpt2_124m();
  const ModelSpec spec(c);
  int dev = 0;
  cudaGetDevice(&dev);
  cudaDeviceProp props;
  cudaGetDeviceProperties(&props, dev);
  const std::string device = props.name;
  const std::vector<float> params = random_params(spec, 31);
  std::vector<Row> rows;
  auto add = [&](const Row& r) {
    rows.push_back(r);
    std::printf("  %s, %s: %s\n", r.what.c_str(), r.setting.c_str(), r.result.c_str());
    std::fflush(stdout);
  };
  std::string gemm;
  {
    BackendOptions o;
    o.trainable = false;
    auto probe = make_cuda_backend(c, o);
    gemm = probe->device_name();
  }
  std::printf("device: %s\n", gemm.c_str());
  check("bench: train bf16 8 x 1024", [&] { add(bench_train(c, params, 8, 1024, true, 3, 10, device)); });
  if (!train_only) {
    check("bench: train bf16 64 x 1024", [&] { add(bench_train(c, params, 64, 1024, true, 1, 5, device)); });
    int largest = 0;
    check("bench: train bf16, largest batch", [&] {
      for (largest = largest_batch(c, 1024, true);; largest -= 8) {
        try {
          Row r = bench_train(c, params, largest, 1024, true, 1, 3, device);
          r.setting += " (largest that fits)";
          add(r);
          break;
        } catch (const cuda::DeviceOutOfMemory&) {
          if (largest <= 8) throw;
        }
      }
    });
    // The switches of work prepared without a GPU, each alone at 8 x 1024, then all together at 8 x 1024 and at
    // the largest batch: against the rows above, what each gives. (The wgmma attention where there is one, unless
    // DIXIE_HOPPER_ATTENTION=0, which gpu.sh sets when the attention section did not pass.)
    std::vector<std::pair<std::string, std::vector<std::string>>> prepared = {
        {"optimizer step in one launch", {"DIXIE_FUSED_ADAMW"}},
        {"bias gradients in cuBLASLt's epilogue", {"DIXIE_BIAS_GRAD_EPILOGUE"}}};
    const char* hopper = std::getenv("DIXIE_HOPPER_ATTENTION");
    if (cuda::wgmma_attention_available() && !(hopper && std::string(hopper) == "0"))
      prepared.insert(prepared.begin(), {"wgmma attention", {"DIXIE_HOPPER_ATTENTION"}});
    std::vector<std::string> all;
    for (const auto& p : prepared) all.push_back(p.second[0]);
    for (const auto& p : prepared) {
      check("bench: train bf16 8 x 1024, " + p.first, [&] {
        Switches on(p.second, true);
        Row r = bench_train(c, params, 8, 1024, true, 3, 10, device);
        r.setting += ", " + p.first;
        add(r);
      });
    }
    for (const int B : {8, largest}) {
      if (B == 0) continue;
      check("bench: train bf16, all prepared switches", [&] {
        Switches on(all, true);
        Row r = bench_train(c, params, B, 1024, true, B == 8 ? 3 : 1, B == 8 ? 10 : 3, device);
        r.setting += (B == 8 ? ", " : " (largest), ") + std::to_string(all.size()) + " prepared switches";
        add(r);
      });
    }
    check("bench: train f32 8 x 1024", [&] { add(bench_train(c, params, 8, 1024, false, 1, 3, device)); });
    // GPT-2 1558M fine-tuned on one card: bf16 with recompute, at the largest batch within an 80 GB card's memory.
    const GPT2Config xl = gpt2_1558m();
    const std::vector<float> xl_params = random_params(ModelSpec(xl), 31, true);
    check("bench: train 1558M bf16 recompute, largest batch within 80 GB", [&] {
      for (int B = largest_batch(xl, 1024, true, true, 80ull * 1000 * 1000 * 1000);; B -= 8) {
        try {
          Row r = bench_train(xl, xl_params, B, 1024, true, 1, 3, device, {}, DType::F32, true);
          r.setting += " (largest within 80 GB)";
          add(r);
          break;
        } catch (const cuda::DeviceOutOfMemory&) {
          if (B <= 8) throw;
        }
      }
    });
    // A LoRA adapter over the base as stored: the memory the narrow base saves, and what expanding it costs a step.
    LoraShape lora;
    lora.rank = 8;
    lora.targets = 15;
    lora.scaling = 2.0f;
    const std::vector<float> lora_params = random_params(ModelSpec(c, lora), 31);
    for (const DType weights : {DType::F32, DType::F16, DType::BF16, DType::Q8_0})
      check("bench: train bf16 LoRA 8 x 1024", [&] { add(bench_train(c, lora_params, 8, 1024, true, 1, 3, device, lora, weights)); });
    // Decoding at batch n: kvForward then sample(), kv_step, and kv_step as CUDA graphs; with sampler_row, the
    // sampler's own times too.
    auto bench_decode = [&](const std::string& model, const GPT2Config& cfg, const std::vector<float>& p,
                            const std::string& mode, int n, bool sampler_row) {
      check("bench: decode", [&] {
        const bool bf16 = mode == "bf16";
        const DType weights = mode == "q8_0" ? DType::Q8_0 : DType::F32;
        auto be = decode_bench_model(cfg, p, bf16, weights);
        auto* cb = dynamic_cast<cuda::CudaBackend*>(be.get());
        const int V = cfg.vocab_size, prompt = 64, steps = 128;
        be->kv_reserve(n);
        std::vector<int> slots(n), ones(n, 1), lens(n, prompt);
        std::iota(slots.begin(), slots.end(), 0);
        std::vector<float> logits(static_cast<size_t>(n) * V);
        const std::vector<int32_t> prefill = random_tokens(static_cast<size_t>(n) * prompt, V, 41);
        be->kv_forward(n, slots.data(), lens.data(), prefill.data(), logits.data(), KvOutput::LastLogits);
        std::vector<SamplingParams> sp(n, SamplingParams{0.8f, 40, 1.0f, 0.0f});
        std::vector<uint64_t> rng(2 * static_cast<size_t>(n), 1);
        std::vector<std::vector<int32_t>> hist(n);
        std::vector<int32_t> next = sample_with(*be, logits, sp, rng, hist);
        double t_forward = 0, t_sample = 0, kernel_ms = 0;
        for (int s = 0; s < steps; ++s) {
          auto t0 = std::chrono::steady_clock::now();
          be->kv_forward(n, slots.data(), ones.data(), next.data(), logits.data(), KvOutput::LastLogits);
          t_forward += seconds_since(t0);
          t0 = std::chrono::steady_clock::now();
          next = sample_with(*be, logits, sp, rng, hist);
          t_sample += seconds_since(t0);
          kernel_ms += cb->last_sample_kernel_ms();
        }
        const double tok = static_cast<double>(n) * steps;
        add({"decode " + model + " " + mode, "batch " + std::to_string(n),
             fmt("%.0f", tok / (t_forward + t_sample)) + " tok/s with sampling (" + fmt("%.0f", tok / t_forward) +
                 " tok/s kvForward alone; " + fmt("%.2f", 1e3 * t_forward / steps) + " ms/step)"});
        // The same steps fused (kv_step: the logits stay on the device, only the tokens come back), after the
        // split ones in the same slots.
        std::vector<int> rows(n);
        std::iota(rows.begin(), rows.end(), 0);
        std::vector<int32_t> drawn(n);
        double t_step = 0;
        for (int s = 0; s < steps; ++s) {
          const auto t0 = std::chrono::steady_clock::now();
          be->kv_step(n, slots.data(), ones.data(), next.data(), n, rows.data(), sp.data(), rng.data(), drawn.data(), nullptr);
          t_step += seconds_since(t0);
          next = drawn;
        }
        add({"decode " + model + " " + mode + ", kvStep", "batch " + std::to_string(n),
             fmt("%.0f", tok / t_step) + " tok/s forward and sampling in one call (" + fmt("%.2f", 1e3 * t_step / steps) +
                 " ms/step)"});
        // The same kv_step calls as CUDA graphs (DIXIE_CUDA_GRAPHS=1), timed once the twin's slots hold as many
        // tokens as the ones above did; its first steps run eagerly, then capture the graph.
        auto graphed = with_decode_graphs(true, [&] { return decode_bench_model(cfg, p, bf16, weights); });
        graphed->kv_reserve(n);
        graphed->kv_forward(n, slots.data(), lens.data(), prefill.data(), logits.data(), KvOutput::LastLogits);
        double t_graph = 0;
        for (int s = 0; s < 2 * steps; ++s) {
          const auto t0 = std::chrono::steady_clock::now();
          graphed->kv_step(n, slots.data(), ones.data(), next.data(), n, rows.data(), sp.data(), rng.data(), drawn.data(), nullptr);
          if (s >= steps) t_graph += seconds_since(t0);
          next = drawn;
        }
        const int64_t launches = dynamic_cast<cuda::CudaBackend*>(graphed.get())->decode_graph_launches();
        add({"decode " + model + " " + mode + ", kvStep, CUDA graphs", "batch " + std::to_string(n),
             fmt("%.0f", tok / t_graph) + " tok/s (" + fmt("%.2f", 1e3 * t_graph / steps) + " ms/step; " +
                 std::to_string(launches) + " of " + std::to_string(2 * steps) + " steps as graphs)"});
        if (sampler_row)
          add({"sample (top-k 40)", std::to_string(n) + " row" + (n > 1 ? "s" : ""),
               fmt("%.1f", 1e3 * kernel_ms / steps) + " us kernel, " + fmt("%.1f", 1e6 * t_sample / steps) + " us per call"});
      });
    };
    for (const std::string mode : {"bf16", "f32", "q8_0"})
      for (const int n : {1, 32}) bench_decode("124M", c, params, mode, n, mode == "bf16");
    bench_decode("1558M", xl, xl_params, "bf16", 1, false);
    // Many fine-tunes of one base in one batch: 16 sequences over 8 adapters (rank 16 on every layer matrix, two
    // slots each) against 16 of the plain base, kv_step as the server decodes.
    for (const std::string mode : {"bf16", "q8_0"}) {
      check("bench: decode with adapters bound to slots", [&] {
        auto be = decode_bench_model(c, params, true, mode == "q8_0" ? DType::Q8_0 : DType::F32);
        const int n = 16, n_adapters = 8, rank = 16, V = c.vocab_size, prompt = 64, steps = 128;
        const std::vector<uint8_t> modules(c.n_layer * 4, 1);
        for (int a = 0; a < n_adapters; ++a) {
          const SlotAdapter ad = random_adapter(spec, rank, 2.0f, modules, 60 + a);
          be->kv_add_adapter(ad.rank, ad.scaling, ad.modules.data(), ad.factors.data(), ad.factors.size());
        }
        std::vector<int> slots(n), ones(n, 1), lens(n, prompt), rows(n);
        std::iota(slots.begin(), slots.end(), 0);
        std::iota(rows.begin(), rows.end(), 0);
        std::vector<SamplingParams> sp(n, SamplingParams{0.8f, 40, 1.0f, 0.0f});
        std::vector<uint64_t> rng(2 * static_cast<size_t>(n), 1);
        const std::vector<int32_t> prefill = random_tokens(static_cast<size_t>(n) * prompt, V, 41);
        // tok/s of `steps` kv_steps after a prefill, each slot s bound to adapter bound(s)
        auto tok_per_s = [&](const std::function<int(int)>& bound) {
          be->kv_reserve(n);
          for (int s = 0; s < n; ++s) be->kv_set_adapter(s, bound(s));
          std::vector<int32_t> next(n), drawn(n);
          be->kv_step(n, slots.data(), lens.data(), prefill.data(), n, rows.data(), sp.data(), rng.data(), next.data(), nullptr);
          const auto t0 = std::chrono::steady_clock::now();
          for (int k = 0; k < steps; ++k) {
            be->kv_step(n, slots.data(), ones.data(), next.data(), n, rows.data(), sp.data(), rng.data(), drawn.data(), nullptr);
            next = drawn;
          }
          return static_cast<double>(n) * steps / seconds_since(t0);
        };
        const double plain = tok_per_s([](int) { return -1; });
        const double adapted = tok_per_s([&](int s) { return s % n_adapters; });
        add({"decode 124M " + mode + ", kvStep, adapters bound to slots", "batch 16: 8 adapters of rank 16 (every matrix) vs the plain base",
             fmt("%.0f", adapted) + " tok/s vs " + fmt("%.0f", plain) + " tok/s (" + fmt("%.2f", adapted / plain) + "x)"});
      });
    }
    check("bench: sampling kernel", [&] {
      BackendOptions o;
      o.trainable = false;
      auto be = make_cuda_backend(c, o);
      auto* cb = dynamic_cast<cuda::CudaBackend*>(be.get());
      const int V = c.vocab_size;
      for (const int n : {1, 32}) {
        Rng rng{51};
        std::vector<float> logits(static_cast<size_t>(n) * V);
        for (auto& x : logits) x = static_cast<float>(2.0 * rng.normal());
        std::vector<std::vector<int32_t>> hist(n, random_tokens(256, V, 52));
        std::vector<SamplingParams> sp(n, SamplingParams{0.8f, 40, 0.95f, 0.85f});
        std::vector<uint64_t> seeds(2 * static_cast<size_t>(n), 3);
        sample_with(*be, logits, sp, seeds, hist);
        double kernel = 0;
        const auto t0 = std::chrono::steady_clock::now();
        const int reps = 50;
        for (int r = 0; r < reps; ++r) {
          sample_with(*be, logits, sp, seeds, hist);
          kernel += cb->last_sample_kernel_ms();
        }
        add({"sample (top-k 40, top-p 0.95, penalty, 256 history)", std::to_string(n) + " row" + (n > 1 ? "s" : ""),
             fmt("%.1f", 1e3 * kernel / reps) + " us kernel, " + fmt("%.1f", 1e6 * seconds_since(t0) / reps) + " us per call"});
      }
    });
  }
  std::printf("\n### %s\n\n%s\n\n| benchmark | setting | result |\n| --- | --- | --- |\n", device.c_str(), gemm.c_str());
  for (const Row& r : rows) std::printf("| %s | %s | %s |\n", r.what.c_str(), r.setting.c_str(), r.result.c_str());
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: dixie_gpu_check reference|cpu|decode|graphs|attention|sampler|lora|adapters|bench|bench-train|profile [--small] [--fixtures DIR]\n");
    return 2;
  }
  const std::string section = argv[1];
  std::string fixtures = "test/fixtures/gpt2-tiny";
  bool small = false;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--small") small = true;
    else if (std::string(argv[i]) == "--fixtures" && i + 1 < argc) fixtures = argv[++i];
  }
  const Shape shape = shape_for(small);
  std::string why;
  if (cuda_device_count(&why) == 0) {
    std::printf("FAIL  no CUDA device: %s\n", why.c_str());
    return 1;
  }
  try {
    if (section == "reference") section_reference(fixtures);
    else if (section == "cpu") section_cpu(shape);
    else if (section == "decode") section_decode(shape);
    else if (section == "sampler") section_sampler(shape);
    else if (section == "lora") section_lora(shape);
    else if (section == "adapters") section_adapters(shape);
    else if (section == "graphs") section_graphs(shape);
    else if (section == "attention") section_attention(small);
    else if (section == "bench") section_bench(false);
    else if (section == "bench-train") section_bench(true);
    else if (section == "profile") section_profile();
    else {
      std::fprintf(stderr, "unknown section '%s'\n", section.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    report(false, section, std::string("threw: ") + e.what());
  }
  return g_failures;
}
