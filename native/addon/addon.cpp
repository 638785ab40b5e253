// N-API bindings: the calls of lib/engine/native.ts over a dixie::Backend. Every argument is checked here, at the
// boundary, so that nothing the backend does can read or write outside a buffer the caller passed; the heavy calls
// (forward, backward, step, kvForward, kvStep) run on libuv's pool in an AsyncWorker and resolve a promise.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/adapter_table.h"
#include "core/backend.h"
#include "core/checks.h"
#include "core/collective.h"
#include "core/ggml_quantize.h"

namespace {

using dixie::Backend;
using dixie::DType;

class ArgError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- argument readers: each names the argument it rejects ----

double number_arg(const Napi::Value& v, const std::string& name) {
  if (!v.IsNumber()) throw ArgError(name + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t int_arg(const Napi::Value& v, const std::string& name, int64_t min, int64_t max) {
  const double d = number_arg(v, name);
  if (!std::isfinite(d) || std::floor(d) != d || d < static_cast<double>(min) || d > static_cast<double>(max))
    throw ArgError(name + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                   Napi::Value(v).ToString().Utf8Value());
  return static_cast<int64_t>(d);
}

constexpr int64_t kMaxSafeInt = 9007199254740991LL;

template <typename T>
Napi::TypedArrayOf<T> typed_arg(const Napi::Value& v, napi_typedarray_type type, const char* type_name,
                                const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw ArgError(name + " must be a " + type_name);
  return v.As<Napi::TypedArrayOf<T>>();
}

Napi::Float32Array f32_arg(const Napi::Value& v, const std::string& name) {
  return typed_arg<float>(v, napi_float32_array, "Float32Array", name);
}
Napi::Int32Array i32_arg(const Napi::Value& v, const std::string& name) {
  return typed_arg<int32_t>(v, napi_int32_array, "Int32Array", name);
}

void require_length(size_t actual, size_t expected, const std::string& name, const std::string& why) {
  if (actual != expected)
    throw ArgError(name + " has length " + std::to_string(actual) + ", expected " + std::to_string(expected) + " (" +
                   why + ")");
}

int64_t optional_int(const Napi::Object& o, const char* key, int64_t fallback, int64_t min, int64_t max,
                     const std::string& where) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  return int_arg(v, where + "." + key, min, max);
}

bool optional_bool(const Napi::Object& o, const char* key, bool fallback, const std::string& where) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) throw ArgError(where + "." + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

float optional_float(const Napi::Object& o, const char* key, float fallback, const std::string& where) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  const double d = number_arg(v, where + "." + key);
  if (!std::isfinite(d)) throw ArgError(where + "." + key + " must be finite");
  return static_cast<float>(d);
}

std::string optional_string(const Napi::Object& o, const char* key, const std::string& fallback, const std::string& where) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) throw ArgError(where + "." + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Object object_arg(const Napi::Value& v, const std::string& name) {
  if (!v.IsObject()) throw ArgError(name + " must be an object");
  return v.As<Napi::Object>();
}

// options.lora: {rank, scaling, targets, dropout, seed}, targets naming the layer matrices as Hugging Face's modules
// do, seed the dropout masks' (the backend checks dropout).
void lora_arg(const Napi::Value& v, dixie::BackendOptions& options) {
  static const char* const kModules[] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};  // kLayerMatrices' order
  const Napi::Object o = object_arg(v, "options.lora");
  options.lora_dropout = optional_float(o, "dropout", 0.0f, "options.lora");
  options.lora_dropout_seed = static_cast<uint64_t>(optional_int(o, "seed", 0, 0, kMaxSafeInt, "options.lora"));
  dixie::LoraShape& lora = options.lora;
  lora.rank = static_cast<int>(int_arg(o.Get("rank"), "options.lora.rank", 1, 1 << 16));
  lora.scaling = optional_float(o, "scaling", 1.0f, "options.lora");
  const Napi::Value targets = o.Get("targets");
  if (!targets.IsArray() || targets.As<Napi::Array>().Length() == 0)
    throw ArgError("options.lora.targets must be a non-empty array of 'attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'");
  const Napi::Array list = targets.As<Napi::Array>();
  for (uint32_t k = 0; k < list.Length(); ++k) {
    const Napi::Value name = list.Get(k);
    const std::string module = name.IsString() ? name.As<Napi::String>().Utf8Value() : "";
    const auto it = std::find(std::begin(kModules), std::end(kModules), module);
    if (it == std::end(kModules))
      throw ArgError("options.lora.targets[" + std::to_string(k) + "] must be one of 'attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'");
    lora.targets |= static_cast<uint8_t>(1u << (it - std::begin(kModules)));
  }
}

// A model's sizes: {nLayer, nHead, nEmbd, nCtx, vocabSize}.
dixie::GPT2Config config_arg(const Napi::Value& v) {
  const Napi::Object config = object_arg(v, "config");
  const int64_t big = 1 << 30;
  dixie::GPT2Config c;
  c.n_layer = static_cast<int>(int_arg(config.Get("nLayer"), "config.nLayer", 1, big));
  c.n_head = static_cast<int>(int_arg(config.Get("nHead"), "config.nHead", 1, big));
  c.n_embd = static_cast<int>(int_arg(config.Get("nEmbd"), "config.nEmbd", 1, big));
  c.n_ctx = static_cast<int>(int_arg(config.Get("nCtx"), "config.nCtx", 1, big));
  c.vocab_size = static_cast<int>(int_arg(config.Get("vocabSize"), "config.vocabSize", 1, big));
  return c;
}

// One row's sampling settings as the sampler reads them (SamplingParams: float32, and an int top-k, below 0 when
// the value is no integer), each optional; their ranges are the backend's to check (core/checks.h). The logit
// biases point into the JavaScript arrays of logitBias {tokens: Int32Array, values: Float32Array}, and a grammar's
// mask into `allowed` (Uint32Array): valid for a call that returns before JavaScript runs again (owned_arrays
// copies them for one that does not).
dixie::SamplingParams sampling_arg(const Napi::Value& v, const std::string& where) {
  const Napi::Object p = object_arg(v, where);
  const auto number = [&](const char* key, double fallback) {
    const Napi::Value x = p.Get(key);
    return x.IsUndefined() || x.IsNull() ? fallback : number_arg(x, where + "." + key);
  };
  dixie::SamplingParams sp;
  sp.temperature = static_cast<float>(number("temperature", 1.0));
  const double top_k = number("topK", 0.0);
  sp.top_k = std::floor(top_k) == top_k && std::fabs(top_k) <= 2147483647.0 ? static_cast<int>(top_k) : -1;
  sp.top_p = static_cast<float>(number("topP", 1.0));
  sp.min_p = static_cast<float>(number("minP", 0.0));
  sp.penalize = static_cast<float>(number("penalize", 0.0));
  const Napi::Value bias = p.Get("logitBias");
  if (!bias.IsUndefined() && !bias.IsNull()) {
    const Napi::Object b = object_arg(bias, where + ".logitBias");
    Napi::Int32Array tokens = i32_arg(b.Get("tokens"), where + ".logitBias.tokens");
    Napi::Float32Array values = f32_arg(b.Get("values"), where + ".logitBias.values");
    require_length(values.ElementLength(), tokens.ElementLength(), where + ".logitBias.values", "one per token");
    sp.n_bias = static_cast<int>(tokens.ElementLength());
    sp.bias_tokens = tokens.Data();
    sp.bias_values = values.Data();
  }
  const Napi::Value allowed = p.Get("allowed");
  if (!allowed.IsUndefined() && !allowed.IsNull()) {
    Napi::Uint32Array words = typed_arg<uint32_t>(allowed, napi_uint32_array, "Uint32Array", where + ".allowed");
    sp.allowed = words.Data();
    sp.allowed_words = static_cast<int>(std::min<size_t>(words.ElementLength(), 1 << 30));
  }
  return sp;
}

// The rows' logit biases and grammar masks copied out of JavaScript's arrays and the rows pointed at the copies,
// for a call that runs off the event loop.
struct OwnedArrays {
  std::vector<int32_t> tokens;
  std::vector<float> values;
  std::vector<uint32_t> allowed;
};
std::shared_ptr<OwnedArrays> owned_arrays(std::vector<dixie::SamplingParams>& rows) {
  auto owned = std::make_shared<OwnedArrays>();
  size_t biases = 0, words = 0;
  for (const dixie::SamplingParams& sp : rows) {
    biases += static_cast<size_t>(sp.n_bias);
    if (sp.allowed != nullptr) words += static_cast<size_t>(sp.allowed_words);
  }
  owned->tokens.reserve(biases);
  owned->values.reserve(biases);
  owned->allowed.reserve(words);
  for (dixie::SamplingParams& sp : rows) {
    const size_t at = owned->tokens.size();
    owned->tokens.insert(owned->tokens.end(), sp.bias_tokens, sp.bias_tokens + sp.n_bias);
    owned->values.insert(owned->values.end(), sp.bias_values, sp.bias_values + sp.n_bias);
    sp.bias_tokens = owned->tokens.data() + at;
    sp.bias_values = owned->values.data() + at;
    if (sp.allowed == nullptr) continue;
    const size_t word_at = owned->allowed.size();
    owned->allowed.insert(owned->allowed.end(), sp.allowed, sp.allowed + sp.allowed_words);
    sp.allowed = owned->allowed.data() + word_at;
  }
  return owned;
}

// A float type of data ('f32', 'f16', 'bf16'), or with `stored` also a type weights are stored in ('q8_0').
DType dtype_from(const std::string& s, const std::string& name, bool stored) {
  if (s == "f32") return DType::F32;
  if (s == "f16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  if (stored && s == "q8_0") return DType::Q8_0;
  throw ArgError(name + " must be 'f32', 'f16', 'bf16'" + (stored ? ", or 'q8_0'" : "") + ", got '" + s + "'");
}

std::vector<std::string> cpu_features() {
  std::vector<std::string> f;
#ifdef __SSE4_2__
  f.push_back("sse4.2");
#endif
#ifdef __AVX__
  f.push_back("avx");
#endif
#ifdef __AVX2__
  f.push_back("avx2");
#endif
#ifdef __FMA__
  f.push_back("fma");
#endif
#ifdef __F16C__
  f.push_back("f16c");
#endif
#ifdef __AVX512F__
  f.push_back("avx512f");
#endif
#ifdef __AVX512BW__
  f.push_back("avx512bw");
#endif
#ifdef __AVX512VL__
  f.push_back("avx512vl");
#endif
#ifdef __AVX512VNNI__
  f.push_back("avx512vnni");
#endif
#ifdef __AVXVNNI__
  f.push_back("avxvnni");
#endif
#ifdef __ARM_NEON
  f.push_back("neon");
#endif
  return f;
}

// ---- device selection ----

#ifdef DIXIE_WITH_CUDA
struct CudaStatus {
  bool usable = false;
  std::string why;  // when not usable
};

// Asked of the driver once per process.
const CudaStatus& cuda_status() {
  static const CudaStatus status = [] {
    CudaStatus s;
    s.usable = dixie::cuda_device_count(&s.why) > 0;
    return s;
  }();
  return status;
}
#endif

// The backend for device 'cuda' (required) or 'auto' (CUDA when a device is present, else the CPU with one
// notice per process).
std::unique_ptr<Backend> make_backend_on_gpu(const dixie::GPT2Config& c, const dixie::BackendOptions& o, bool required) {
#ifdef DIXIE_WITH_CUDA
  const CudaStatus& cuda = cuda_status();
  if (cuda.usable) return dixie::make_cuda_backend(c, o);
  if (required)
    throw std::runtime_error("options.device is 'cuda' but no CUDA device is usable (" + cuda.why +
                             "); device 'auto' or 'cpu' runs on the CPU");
  static std::once_flag notice;
  std::call_once(notice, [&cuda] {
    std::fprintf(stderr, "dixie: %s, running on the CPU\n", cuda.why.c_str());
  });
#else
  if (required) throw std::runtime_error("options.device is 'cuda' but this addon was built without CUDA (no nvcc at build time)");
#endif
  return dixie::make_cpu_backend(c, o);
}

// The logprobs argument of kvForward, kvStep and tokenLogprobs: {top, allowed: Uint32Array | null, targets: Int32Array,
// logprob: Float64Array, topTokens: Int32Array, topLogprobs: Float64Array}, its fields read once on the event loop
// and its outputs put in `keep`, so that none is collected while a worker writes them.
struct LogprobArg {
  bool given = false;
  Napi::Value top, allowed, targets, logprob, top_tokens, top_logprobs;
};
LogprobArg logprob_arg(const Napi::Value& v, std::vector<Napi::Value>& keep) {
  LogprobArg a;
  if (v.IsUndefined() || v.IsNull()) return a;
  a.given = true;
  if (!v.IsObject()) return a;  // logprob_rows names it
  const Napi::Object o = v.As<Napi::Object>();
  a.top = o.Get("top");
  a.allowed = o.Get("allowed");
  a.targets = o.Get("targets");
  a.logprob = o.Get("logprob");
  a.top_tokens = o.Get("topTokens");
  a.top_logprobs = o.Get("topLogprobs");
  keep.insert(keep.end(), {a.logprob, a.top_tokens, a.top_logprobs});
  return a;
}

// A logprobs argument checked for `rows` rows of V logits, its inputs copied for a worker: the mask, and the targets
// unless `drawn` gives them (kvStep's are the tokens it draws, which it ignores).
struct OwnedLogprobs {
  std::vector<uint32_t> allowed;
  std::vector<int32_t> targets;
  dixie::LogprobRows rows;
};
std::shared_ptr<OwnedLogprobs> logprob_rows(const LogprobArg& a, size_t rows, int V, const int32_t* drawn, const std::string& name) {
  if (a.logprob.IsEmpty()) throw ArgError(name + " must be an object");
  auto owned = std::make_shared<OwnedLogprobs>();
  dixie::LogprobRows& r = owned->rows;
  r.top = static_cast<int>(int_arg(a.top, name + ".top", 0, V));
  if (!a.allowed.IsUndefined() && !a.allowed.IsNull()) {
    Napi::Uint32Array words = typed_arg<uint32_t>(a.allowed, napi_uint32_array, "Uint32Array", name + ".allowed");
    require_length(words.ElementLength(), (static_cast<size_t>(V) + 31) / 32, name + ".allowed", "one bit per logit of a row");
    owned->allowed.assign(words.Data(), words.Data() + words.ElementLength());
    r.allowed = owned->allowed.data();
  }
  if (drawn) {
    r.targets = drawn;
  } else {
    Napi::Int32Array targets = i32_arg(a.targets, name + ".targets");
    require_length(targets.ElementLength(), rows, name + ".targets", "one token per row");
    for (size_t i = 0; i < rows; ++i) {
      if (targets[i] < 0 || targets[i] >= V)
        throw std::out_of_range(name + ".targets[" + std::to_string(i) + "] is " + std::to_string(targets[i]) +
                                ", outside the vocabulary of " + std::to_string(V));
    }
    owned->targets.assign(targets.Data(), targets.Data() + rows);
    r.targets = owned->targets.data();
  }
  Napi::Float64Array logprob = typed_arg<double>(a.logprob, napi_float64_array, "Float64Array", name + ".logprob");
  Napi::Int32Array top_tokens = i32_arg(a.top_tokens, name + ".topTokens");
  Napi::Float64Array top_logprobs = typed_arg<double>(a.top_logprobs, napi_float64_array, "Float64Array", name + ".topLogprobs");
  require_length(logprob.ElementLength(), rows, name + ".logprob", "one per row");
  require_length(top_tokens.ElementLength(), rows * r.top, name + ".topTokens", "top per row");
  require_length(top_logprobs.ElementLength(), rows * r.top, name + ".topLogprobs", "top per row");
  r.logprob = logprob.Data();
  r.top_tokens = top_tokens.Data();
  r.top_logprobs = top_logprobs.Data();
  return owned;
}

// ---- the model ----

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);

 private:
  friend class Job;

  Backend& backend(const char* method);  // throws when disposed or busy
  Napi::Value run_async(const Napi::CallbackInfo& info, const char* method,
                        const std::function<std::function<double()>(Backend&)>& prepare, bool returns_number,
                        std::vector<Napi::Value> keep_alive);

  Napi::Value Layout(const Napi::CallbackInfo& info);
  Napi::Value NumParams(const Napi::CallbackInfo& info);
  Napi::Value Memory(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value WriteParams(const Napi::CallbackInfo& info);
  Napi::Value ReadParams(const Napi::CallbackInfo& info);
  Napi::Value ReadGrads(const Napi::CallbackInfo& info);
  Napi::Value WriteOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value ReadOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value OptimizerStepCount(const Napi::CallbackInfo& info);
  Napi::Value SetOptimizerStepCount(const Napi::CallbackInfo& info);
  Napi::Value SetParamFlags(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value KvReserve(const Napi::CallbackInfo& info);
  Napi::Value KvForward(const Napi::CallbackInfo& info);
  Napi::Value KvTruncate(const Napi::CallbackInfo& info);
  Napi::Value KvLength(const Napi::CallbackInfo& info);
  Napi::Value KvAddAdapter(const Napi::CallbackInfo& info);
  Napi::Value KvRemoveAdapter(const Napi::CallbackInfo& info);
  Napi::Value KvSetAdapter(const Napi::CallbackInfo& info);
  Napi::Value KvStep(const Napi::CallbackInfo& info);
  Napi::Value Sample(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  size_t check_offset(const Napi::Value& v, size_t count, const char* method);
  int check_slot(const Napi::Value& v, const std::string& name);

  std::unique_ptr<Backend> backend_;
  std::atomic<bool> busy_{false};
  const char* busy_with_ = "";
  int kv_slots_ = 0;
};

// A heavy call on libuv's thread pool. It holds references to the model object and to every buffer the work
// touches, so none is collected while the native side uses it.
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, ModelWrap* model, std::function<double()> work, bool returns_number,
      const std::vector<Napi::Value>& keep_alive)
      : Napi::AsyncWorker(env), model_(model), work_(std::move(work)), returns_number_(returns_number),
        deferred_(Napi::Promise::Deferred::New(env)) {
    model_ref_ = Napi::Persistent(model->Value());
    for (const Napi::Value& v : keep_alive) {
      if (v.IsObject()) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
    }
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      result_ = work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    model_->busy_ = false;
    deferred_.Resolve(returns_number_ ? Napi::Number::New(Env(), result_) : Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    model_->busy_ = false;
    deferred_.Reject(e.Value());
  }

 private:
  ModelWrap* model_;
  std::function<double()> work_;
  bool returns_number_;
  double result_ = 0.0;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference model_ref_;
  std::vector<Napi::ObjectReference> refs_;
};

Napi::Function ModelWrap::Define(Napi::Env env) {
  return DefineClass(env, "Model",
                     {
                         InstanceMethod("layout", &ModelWrap::Layout),
                         InstanceMethod("numParams", &ModelWrap::NumParams),
                         InstanceMethod("memory", &ModelWrap::Memory),
                         InstanceMethod("device", &ModelWrap::Device),
                         InstanceMethod("writeParams", &ModelWrap::WriteParams),
                         InstanceMethod("readParams", &ModelWrap::ReadParams),
                         InstanceMethod("readGrads", &ModelWrap::ReadGrads),
                         InstanceMethod("writeOptimizerState", &ModelWrap::WriteOptimizerState),
                         InstanceMethod("readOptimizerState", &ModelWrap::ReadOptimizerState),
                         InstanceMethod("optimizerStepCount", &ModelWrap::OptimizerStepCount),
                         InstanceMethod("setOptimizerStepCount", &ModelWrap::SetOptimizerStepCount),
                         InstanceMethod("setParamFlags", &ModelWrap::SetParamFlags),
                         InstanceMethod("forward", &ModelWrap::Forward),
                         InstanceMethod("zeroGrad", &ModelWrap::ZeroGrad),
                         InstanceMethod("backward", &ModelWrap::Backward),
                         InstanceMethod("step", &ModelWrap::Step),
                         InstanceMethod("kvReserve", &ModelWrap::KvReserve),
                         InstanceMethod("kvForward", &ModelWrap::KvForward),
                         InstanceMethod("kvTruncate", &ModelWrap::KvTruncate),
                         InstanceMethod("kvLength", &ModelWrap::KvLength),
                         InstanceMethod("kvAddAdapter", &ModelWrap::KvAddAdapter),
                         InstanceMethod("kvRemoveAdapter", &ModelWrap::KvRemoveAdapter),
                         InstanceMethod("kvSetAdapter", &ModelWrap::KvSetAdapter),
                         InstanceMethod("kvStep", &ModelWrap::KvStep),
                         InstanceMethod("sample", &ModelWrap::Sample),
                         InstanceMethod("dispose", &ModelWrap::Dispose),
                     });
}

// Turns C++ exceptions from argument checks and the backend into JS errors: RangeError for values out of range,
// TypeError for wrong argument types, Error otherwise.
template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const ArgError& e) {
    throw Napi::TypeError::New(info.Env(), e.what());
  } catch (const std::out_of_range& e) {
    throw Napi::RangeError::New(info.Env(), e.what());
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(info.Env(), e.what());
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), "out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  guarded(info, [&]() -> Napi::Value {
    const dixie::GPT2Config c = config_arg(info[0]);
    const int64_t big = 1 << 30;
    const Napi::Object options = info[1].IsUndefined() ? Napi::Object::New(info.Env()) : object_arg(info[1], "options");
    dixie::BackendOptions o;
    o.threads = static_cast<int>(optional_int(options, "threads", 0, 0, 1024, "options"));
    o.background = optional_bool(options, "background", false, "options");
    o.max_batch = static_cast<int>(optional_int(options, "maxBatch", 1, 1, big, "options"));
    o.max_seq = static_cast<int>(optional_int(options, "maxSeq", 0, 0, c.n_ctx, "options"));
    o.recompute = optional_bool(options, "recompute", false, "options");
    o.trainable = optional_bool(options, "trainable", true, "options");
    o.weight_dtype = dtype_from(optional_string(options, "weightDtype", "f32", "options"), "options.weightDtype", true);
    const std::string precision = optional_string(options, "precision", "f32", "options");
    if (precision != "f32" && precision != "bf16")
      throw ArgError("options.precision must be 'f32' or 'bf16', got '" + precision + "'");
    o.mixed_bf16 = precision == "bf16";
    const Napi::Value parallel = options.Get("dataParallel");
    if (!parallel.IsUndefined() && !parallel.IsNull()) {
      const Napi::Object dp = object_arg(parallel, "options.dataParallel");
      o.data_parallel = dixie::process_collective();
      if (!o.data_parallel)
        throw std::logic_error("options.dataParallel: MPI is not initialised in this process (call initDistributed first)");
      o.zero_stage = static_cast<int>(optional_int(dp, "zero", 0, 0, 1, "options.dataParallel"));
      o.micro_batches = static_cast<int>(optional_int(dp, "microBatches", 1, 1, big, "options.dataParallel"));
    }
    const Napi::Value lora = options.Get("lora");
    if (!lora.IsUndefined() && !lora.IsNull()) lora_arg(lora, o);
    const std::string device = optional_string(options, "device", "auto", "options");
    if (device != "cpu" && device != "cuda" && device != "auto")
      throw ArgError("options.device must be 'cpu', 'cuda' or 'auto', got '" + device + "'");
    backend_ = device == "cpu" ? dixie::make_cpu_backend(c, o) : make_backend_on_gpu(c, o, device == "cuda");
    return info.Env().Undefined();
  });
}

Backend& ModelWrap::backend(const char* method) {
  if (!backend_) throw std::logic_error(std::string(method) + ": the model has been disposed");
  if (busy_)
    throw std::logic_error(std::string(method) + ": the model is busy with " + busy_with_ +
                           " (calls on one model must not overlap; await the previous one)");
  return *backend_;
}

size_t ModelWrap::check_offset(const Napi::Value& v, size_t count, const char* method) {
  const size_t P = backend_->spec().num_params();
  const int64_t offset = int_arg(v, std::string(method) + ": offset", 0, kMaxSafeInt);
  if (static_cast<size_t>(offset) > P || count > P - static_cast<size_t>(offset))
    throw std::out_of_range(std::string(method) + ": offset " + std::to_string(offset) + " + length " +
                            std::to_string(count) + " is beyond the " + std::to_string(P) + " parameters");
  return static_cast<size_t>(offset);
}

int ModelWrap::check_slot(const Napi::Value& v, const std::string& name) {
  if (kv_slots_ == 0) throw std::logic_error(name + ": the KV cache is not reserved (call kvReserve first)");
  return static_cast<int>(int_arg(v, name, 0, kv_slots_ - 1));
}

Napi::Value ModelWrap::run_async(const Napi::CallbackInfo& info, const char* method,
                                 const std::function<std::function<double()>(Backend&)>& prepare, bool returns_number,
                                 std::vector<Napi::Value> keep_alive) {
  Napi::Env env = info.Env();
  std::function<double()> work;
  try {
    guarded(info, [&]() -> Napi::Value {
      work = prepare(backend(method));
      return env.Undefined();
    });
  } catch (const Napi::Error& e) {  // argument errors reject the promise too, so callers handle one path
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    d.Reject(e.Value());
    return d.Promise();
  }
  keep_alive.push_back(info.This());
  Job* job = new Job(env, this, std::move(work), returns_number, keep_alive);
  busy_ = true;
  busy_with_ = method;
  Napi::Promise promise = job->promise();
  job->Queue();
  return promise;
}

Napi::Value ModelWrap::Layout(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!backend_) throw std::logic_error("layout: the model has been disposed");
    Napi::Env env = info.Env();
    const auto& tensors = backend_->spec().tensors();
    Napi::Array out = Napi::Array::New(env, tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", t.name);
      Napi::Array shape = Napi::Array::New(env, t.shape.size());
      for (size_t d = 0; d < t.shape.size(); ++d) shape.Set(d, Napi::Number::New(env, static_cast<double>(t.shape[d])));
      o.Set("shape", shape);
      o.Set("offset", Napi::Number::New(env, static_cast<double>(t.offset)));
      o.Set("numel", Napi::Number::New(env, static_cast<double>(t.numel)));
      o.Set("isMatrix", Napi::Boolean::New(env, t.is_matrix));
      out.Set(i, o);
    }
    return out;
  });
}

Napi::Value ModelWrap::NumParams(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!backend_) throw std::logic_error("numParams: the model has been disposed");
    return Napi::Number::New(info.Env(), static_cast<double>(backend_->spec().num_params()));
  });
}

Napi::Value ModelWrap::Memory(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!backend_) throw std::logic_error("memory: the model has been disposed");
    const dixie::MemoryReport m = backend_->memory();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("params", static_cast<double>(m.params));
    o.Set("grads", static_cast<double>(m.grads));
    o.Set("optimizer", static_cast<double>(m.optimizer));
    o.Set("activations", static_cast<double>(m.activations));
    o.Set("kvCache", static_cast<double>(m.kv_cache));
    return o;
  });
}

Napi::Value ModelWrap::Device(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!backend_) throw std::logic_error("device: the model has been disposed");
    return Napi::String::New(info.Env(), backend_->device_name());
  });
}

Napi::Value ModelWrap::WriteParams(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("writeParams");
    const DType dtype = dtype_from(info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "", "writeParams: dtype", false);
    const std::string name = "writeParams: src";
    const void* src;
    size_t count;
    if (dtype == DType::F32) {
      Napi::Float32Array a = f32_arg(info[1], name);
      src = a.Data();
      count = a.ElementLength();
    } else {
      Napi::Uint16Array a = typed_arg<uint16_t>(info[1], napi_uint16_array, "Uint16Array (16-bit dtypes)", name);
      src = a.Data();
      count = a.ElementLength();
    }
    b.write_params(check_offset(info[0], count, "writeParams"), src, count, dtype);
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::ReadParams(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("readParams");
    Napi::Float32Array dst = f32_arg(info[1], "readParams: dst");
    b.read_params(check_offset(info[0], dst.ElementLength(), "readParams"), dst.Data(), dst.ElementLength());
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::ReadGrads(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("readGrads");
    Napi::Float32Array dst = f32_arg(info[1], "readGrads: dst");
    b.read_grads(check_offset(info[0], dst.ElementLength(), "readGrads"), dst.Data(), dst.ElementLength());
    return info.Env().Undefined();
  });
}

dixie::OptimizerSlot slot_arg(const Napi::Value& v, const char* method) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "m") return dixie::OptimizerSlot::M;
  if (s == "v") return dixie::OptimizerSlot::V;
  throw ArgError(std::string(method) + ": slot must be 'm' or 'v'");
}

Napi::Value ModelWrap::WriteOptimizerState(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("writeOptimizerState");
    const dixie::OptimizerSlot slot = slot_arg(info[0], "writeOptimizerState");
    Napi::Float32Array src = f32_arg(info[2], "writeOptimizerState: src");
    b.write_optimizer_state(slot, check_offset(info[1], src.ElementLength(), "writeOptimizerState"), src.Data(),
                            src.ElementLength());
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::ReadOptimizerState(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("readOptimizerState");
    const dixie::OptimizerSlot slot = slot_arg(info[0], "readOptimizerState");
    Napi::Float32Array dst = f32_arg(info[2], "readOptimizerState: dst");
    b.read_optimizer_state(slot, check_offset(info[1], dst.ElementLength(), "readOptimizerState"), dst.Data(),
                           dst.ElementLength());
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::OptimizerStepCount(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), static_cast<double>(backend("optimizerStepCount").optimizer_step_count()));
  });
}

Napi::Value ModelWrap::SetOptimizerStepCount(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("setOptimizerStepCount");
    b.set_optimizer_step_count(int_arg(info[0], "setOptimizerStepCount: t", 0, kMaxSafeInt));
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::SetParamFlags(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("setParamFlags");
    const size_t n = b.spec().tensors().size();
    Napi::Uint8Array trainable = typed_arg<uint8_t>(info[0], napi_uint8_array, "Uint8Array", "setParamFlags: trainable");
    Napi::Uint8Array decay = typed_arg<uint8_t>(info[1], napi_uint8_array, "Uint8Array", "setParamFlags: decay");
    require_length(trainable.ElementLength(), n, "setParamFlags: trainable", "one byte per layout() entry");
    require_length(decay.ElementLength(), n, "setParamFlags: decay", "one byte per layout() entry");
    b.set_param_flags(trainable.Data(), decay.Data());
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  std::vector<Napi::Value> keep = {info[4]};
  return run_async(info, "forward", [&](Backend& b) -> std::function<double()> {
    const auto& c = b.spec().config();
    const int B = static_cast<int>(int_arg(info[2], "forward: B", 1, 1 << 30));
    const int T = static_cast<int>(int_arg(info[3], "forward: T", 1, 1 << 30));
    const size_t N = static_cast<size_t>(B) * T;
    Napi::Int32Array inputs = i32_arg(info[0], "forward: inputs");
    require_length(inputs.ElementLength(), N, "forward: inputs", "B*T");
    // Token ids are copied here and checked by the backend, so JS cannot change them after the check.
    auto in = std::make_shared<std::vector<int32_t>>(inputs.Data(), inputs.Data() + N);
    std::shared_ptr<std::vector<int32_t>> tg;
    if (!info[1].IsNull() && !info[1].IsUndefined()) {
      Napi::Int32Array targets = i32_arg(info[1], "forward: targets");
      require_length(targets.ElementLength(), N, "forward: targets", "B*T");
      tg = std::make_shared<std::vector<int32_t>>(targets.Data(), targets.Data() + N);
    }
    float* logits = nullptr;
    if (!info[4].IsNull() && !info[4].IsUndefined()) {
      Napi::Float32Array out = f32_arg(info[4], "forward: logitsOut");
      require_length(out.ElementLength(), N * static_cast<size_t>(c.vocab_size), "forward: logitsOut", "B*T*vocabSize");
      logits = out.Data();
    }
    // training: null for an evaluation, or {step, microBatch}, which key the adapter's dropout masks
    dixie::ForwardOptions options;
    if (!info[5].IsNull() && !info[5].IsUndefined()) {
      const Napi::Object o = object_arg(info[5], "forward: training");
      options.training = true;
      options.step = int_arg(o.Get("step"), "forward: training.step", 0, kMaxSafeInt);
      options.micro_batch = static_cast<int>(int_arg(o.Get("microBatch"), "forward: training.microBatch", 0, 1 << 30));
    }
    Backend* bp = &b;
    return [bp, in, tg, logits, B, T, options]() -> double {
      return bp->forward(in->data(), tg ? tg->data() : nullptr, B, T, logits, options);
    };
  }, true, keep);
}

Napi::Value ModelWrap::ZeroGrad(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    backend("zeroGrad").zero_grad();
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::Backward(const Napi::CallbackInfo& info) {
  return run_async(info, "backward", [&](Backend& b) -> std::function<double()> {
    Backend* bp = &b;
    return [bp]() -> double {
      bp->backward();
      return 0.0;
    };
  }, false, {});
}

Napi::Value ModelWrap::Step(const Napi::CallbackInfo& info) {
  return run_async(info, "step", [&](Backend& b) -> std::function<double()> {
    const Napi::Object o = object_arg(info[0], "step: options");
    dixie::StepOptions s;
    const std::string kind = optional_string(o, "optimizer", "", "step options");
    if (kind == "adamw") s.kind = dixie::OptimizerKind::AdamW;
    else if (kind == "sgd") s.kind = dixie::OptimizerKind::SGD;
    else throw ArgError("step options.optimizer must be 'adamw' or 'sgd', got '" + kind + "'");
    if (o.Get("lr").IsUndefined()) throw ArgError("step options.lr is required");
    s.lr = optional_float(o, "lr", 0.0f, "step options");
    s.beta1 = optional_float(o, "beta1", s.beta1, "step options");
    s.beta2 = optional_float(o, "beta2", s.beta2, "step options");
    s.eps = optional_float(o, "eps", s.eps, "step options");
    s.weight_decay = optional_float(o, "weightDecay", 0.0f, "step options");
    s.grad_scale = optional_float(o, "gradScale", 1.0f, "step options");
    s.grad_clip = optional_float(o, "gradClip", 0.0f, "step options");
    if (s.lr < 0) throw std::invalid_argument("step options.lr must be >= 0");
    if (s.beta1 < 0 || s.beta1 >= 1) throw std::invalid_argument("step options.beta1 must be in [0, 1)");
    if (s.beta2 < 0 || s.beta2 >= 1) throw std::invalid_argument("step options.beta2 must be in [0, 1)");
    if (s.eps <= 0) throw std::invalid_argument("step options.eps must be > 0");
    if (s.weight_decay < 0) throw std::invalid_argument("step options.weightDecay must be >= 0");
    if (s.grad_clip < 0) throw std::invalid_argument("step options.gradClip must be >= 0");
    Backend* bp = &b;
    return [bp, s]() -> double { return bp->step(s); };
  }, true, {});
}

Napi::Value ModelWrap::KvReserve(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("kvReserve");
    const int n = static_cast<int>(int_arg(info[0], "kvReserve: nSlots", 1, 1 << 20));
    const int logit_rows = b.kv_reserve(n);
    kv_slots_ = n;
    return Napi::Number::New(info.Env(), logit_rows);
  });
}

// kvForward's output (absent: lastLogits).
dixie::KvOutput kv_output_arg(const Napi::Value& v) {
  if (v.IsUndefined()) return dixie::KvOutput::LastLogits;
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "lastLogits") return dixie::KvOutput::LastLogits;
  if (s == "tokenLogits") return dixie::KvOutput::TokenLogits;
  if (s == "tokenStates") return dixie::KvOutput::TokenStates;
  throw ArgError("kvForward: output must be 'lastLogits', 'tokenLogits' or 'tokenStates'");
}

// kvForward(slots, nNew, tokens, out, output?, logprobs?): logprobs (with tokenLogits only) are computed in the worker
// from the logits it writes to `out`.
Napi::Value ModelWrap::KvForward(const Napi::CallbackInfo& info) {
  std::vector<Napi::Value> keep = {info[3]};
  const LogprobArg logprobs = logprob_arg(info[5], keep);
  return run_async(info, "kvForward", [&](Backend& b) -> std::function<double()> {
    const auto& c = b.spec().config();
    Napi::Int32Array slots = i32_arg(info[0], "kvForward: slots");
    Napi::Int32Array n_new = i32_arg(info[1], "kvForward: nNew");
    Napi::Int32Array tokens = i32_arg(info[2], "kvForward: tokens");
    Napi::Float32Array out_array = f32_arg(info[3], "kvForward: out");
    const dixie::KvOutput output = kv_output_arg(info[4]);
    const size_t n = slots.ElementLength();
    if (n == 0) throw ArgError("kvForward: slots is empty");
    require_length(n_new.ElementLength(), n, "kvForward: nNew", "one count per slot");
    // The values are the backend's to check (core/checks.h check_kv_forward); here only what keeps the buffers safe.
    int64_t total = 0;
    for (size_t i = 0; i < n; ++i) total += n_new.Data()[i];
    require_length(tokens.ElementLength(), static_cast<size_t>(std::max<int64_t>(total, 0)), "kvForward: tokens", "the sum of nNew");
    const bool states = output == dixie::KvOutput::TokenStates, last = output == dixie::KvOutput::LastLogits;
    require_length(out_array.ElementLength(), (last ? n : tokens.ElementLength()) * static_cast<size_t>(states ? c.n_embd : c.vocab_size),
                   "kvForward: out", states ? "tokens.length * nEmbd" : last ? "slots.length * vocabSize" : "tokens.length * vocabSize");
    auto s = std::make_shared<std::vector<int32_t>>(slots.Data(), slots.Data() + n);
    auto k = std::make_shared<std::vector<int32_t>>(n_new.Data(), n_new.Data() + n);
    auto t = std::make_shared<std::vector<int32_t>>(tokens.Data(), tokens.Data() + tokens.ElementLength());
    std::shared_ptr<OwnedLogprobs> lp;
    if (logprobs.given) {
      if (output != dixie::KvOutput::TokenLogits) throw ArgError("kvForward: logprobs needs output 'tokenLogits'");
      lp = logprob_rows(logprobs, tokens.ElementLength(), c.vocab_size, nullptr, "kvForward: logprobs");
    }
    Backend* bp = &b;
    float* out = out_array.Data();
    const int count = static_cast<int>(n), rows = static_cast<int>(tokens.ElementLength()), V = c.vocab_size;
    return [bp, s, k, t, out, count, output, lp, rows, V]() -> double {
      bp->kv_forward(count, s->data(), k->data(), t->data(), out, output);
      if (lp) dixie::token_logprobs(out, rows, V, lp->rows);
      return 0.0;
    };
  }, false, keep);
}

Napi::Value ModelWrap::KvTruncate(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("kvTruncate");
    b.kv_truncate(check_slot(info[0], "kvTruncate: slot"), static_cast<int>(int_arg(info[1], "kvTruncate: length", 0, INT32_MAX)));
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::KvLength(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("kvLength");
    return Napi::Number::New(info.Env(), b.kv_length(check_slot(info[0], "kvLength: slot")));
  });
}

// kvAddAdapter(rank, scaling, modules: Uint8Array [n_layer * 4], factors: Float32Array) -> id
Napi::Value ModelWrap::KvAddAdapter(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("kvAddAdapter");
    const int rank = static_cast<int>(int_arg(info[0], "kvAddAdapter: rank", 1, INT32_MAX));
    const double scaling = number_arg(info[1], "kvAddAdapter: scaling");
    if (!std::isfinite(scaling)) throw ArgError("kvAddAdapter: scaling must be finite");
    Napi::Uint8Array modules = typed_arg<uint8_t>(info[2], napi_uint8_array, "Uint8Array", "kvAddAdapter: modules");
    require_length(modules.ElementLength(), static_cast<size_t>(b.spec().config().n_layer) * 4, "kvAddAdapter: modules",
                   "one byte per layer and layer matrix");
    Napi::Float32Array factors = f32_arg(info[3], "kvAddAdapter: factors");
    return Napi::Number::New(info.Env(), b.kv_add_adapter(rank, static_cast<float>(scaling), modules.Data(), factors.Data(), factors.ElementLength()));
  });
}

Napi::Value ModelWrap::KvRemoveAdapter(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    backend("kvRemoveAdapter").kv_remove_adapter(static_cast<int>(int_arg(info[0], "kvRemoveAdapter: id", 0, INT32_MAX)));
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::KvSetAdapter(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("kvSetAdapter");
    b.kv_set_adapter(check_slot(info[0], "kvSetAdapter: slot"), static_cast<int>(int_arg(info[1], "kvSetAdapter: id", -1, INT32_MAX)));
    return info.Env().Undefined();
  });
}

// kvStep(slots, nNew, tokens, sampleRows, params, rngState, out, logitsOut | null, logprobs?): only the types, the
// lengths and what keeps the buffers safe are checked here; the values are the backend's to check (core/checks.h
// check_kv_step), in the worker, before it changes anything. logprobs (with logitsOut) are of the drawn tokens,
// computed in the worker from the logits it writes to logitsOut.
Napi::Value ModelWrap::KvStep(const Napi::CallbackInfo& info) {
  std::vector<Napi::Value> keep = {info[5], info[6], info[7]};
  const LogprobArg logprobs = logprob_arg(info[8], keep);
  return run_async(info, "kvStep", [&](Backend& b) -> std::function<double()> {
    const int V = b.spec().config().vocab_size;
    Napi::Int32Array slots = i32_arg(info[0], "kvStep: slots");
    Napi::Int32Array n_new = i32_arg(info[1], "kvStep: nNew");
    Napi::Int32Array tokens = i32_arg(info[2], "kvStep: tokens");
    Napi::Int32Array sample_rows = i32_arg(info[3], "kvStep: sampleRows");
    if (!info[4].IsArray()) throw ArgError("kvStep: params must be an array");
    Napi::Array params = info[4].As<Napi::Array>();
    Napi::BigUint64Array rng = typed_arg<uint64_t>(info[5], napi_biguint64_array, "BigUint64Array", "kvStep: rngState");
    Napi::Int32Array out = i32_arg(info[6], "kvStep: out");
    const size_t n = slots.ElementLength(), m = sample_rows.ElementLength();
    if (n == 0) throw ArgError("kvStep: slots is empty");
    require_length(n_new.ElementLength(), n, "kvStep: nNew", "one count per slot");
    // The backend reads sum(nNew) tokens, once it has seen that every count is positive.
    int64_t total = 0;
    for (size_t i = 0; i < n; ++i) total += n_new[i];
    require_length(tokens.ElementLength(), static_cast<size_t>(std::max<int64_t>(total, 0)), "kvStep: tokens", "the sum of nNew");
    require_length(params.Length(), m, "kvStep: params", "one per sampled row");
    require_length(rng.ElementLength(), 2 * m, "kvStep: rngState", "two words per sampled row");
    require_length(out.ElementLength(), m, "kvStep: out", "one token per sampled row");
    float* logits_out = nullptr;
    if (!info[7].IsNull() && !info[7].IsUndefined()) {
      Napi::Float32Array logits = f32_arg(info[7], "kvStep: logitsOut");
      require_length(logits.ElementLength(), m * static_cast<size_t>(V), "kvStep: logitsOut", "sampleRows.length * vocabSize");
      logits_out = logits.Data();
    }
    std::shared_ptr<OwnedLogprobs> lp;
    if (logprobs.given) {
      if (!logits_out) throw ArgError("kvStep: logprobs needs logitsOut");
      lp = logprob_rows(logprobs, m, V, out.Data(), "kvStep: logprobs");
    }
    auto s = std::make_shared<std::vector<int32_t>>(slots.Data(), slots.Data() + n);
    auto k = std::make_shared<std::vector<int32_t>>(n_new.Data(), n_new.Data() + n);
    auto t = std::make_shared<std::vector<int32_t>>(tokens.Data(), tokens.Data() + tokens.ElementLength());
    auto rows = std::make_shared<std::vector<int32_t>>(sample_rows.Data(), sample_rows.Data() + m);
    auto sp = std::make_shared<std::vector<dixie::SamplingParams>>(m);
    for (size_t i = 0; i < m; ++i) (*sp)[i] = sampling_arg(params.Get(static_cast<uint32_t>(i)), "kvStep: params[" + std::to_string(i) + "]");
    auto arrays = owned_arrays(*sp);
    Backend* bp = &b;
    uint64_t* rng_state = rng.Data();
    int32_t* out_tokens = out.Data();
    const int count = static_cast<int>(n), sampled = static_cast<int>(m);
    return [bp, s, k, t, rows, sp, arrays, rng_state, out_tokens, logits_out, count, sampled, lp, V]() -> double {
      bp->kv_step(count, s->data(), k->data(), t->data(), sampled, rows->data(), sp->data(), rng_state, out_tokens, logits_out);
      if (lp) dixie::token_logprobs(logits_out, sampled, V, lp->rows);
      return 0.0;
    };
  }, false, keep);
}

Napi::Value ModelWrap::Sample(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Backend& b = backend("sample");
    const int V = b.spec().config().vocab_size;
    Napi::Float32Array logits = f32_arg(info[0], "sample: logits");
    if (!info[1].IsArray()) throw ArgError("sample: params must be an array");
    Napi::Array params = info[1].As<Napi::Array>();
    const size_t n = params.Length();
    require_length(logits.ElementLength(), n * static_cast<size_t>(V), "sample: logits", "params.length * vocabSize");
    Napi::BigUint64Array rng = typed_arg<uint64_t>(info[2], napi_biguint64_array, "BigUint64Array", "sample: rngState");
    require_length(rng.ElementLength(), 2 * n, "sample: rngState", "two words per row");
    if (!info[3].IsArray()) throw ArgError("sample: histories must be an array");
    Napi::Array histories = info[3].As<Napi::Array>();
    require_length(histories.Length(), n, "sample: histories", "one per row");
    Napi::Int32Array out = i32_arg(info[4], "sample: out");
    require_length(out.ElementLength(), n, "sample: out", "one token per row");
    std::vector<dixie::SamplingParams> sp(n);
    std::vector<const int32_t*> hist(n);
    std::vector<int32_t> hist_len(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string where = "sample: params[" + std::to_string(i) + "]";
      sp[i] = sampling_arg(params.Get(static_cast<uint32_t>(i)), where);
      Napi::Int32Array h = i32_arg(histories.Get(static_cast<uint32_t>(i)), "sample: histories[" + std::to_string(i) + "]");
      for (size_t j = 0; j < h.ElementLength(); ++j) {
        if (h[j] < 0 || h[j] >= V)
          throw std::out_of_range("sample: histories[" + std::to_string(i) + "][" + std::to_string(j) + "] = " +
                                  std::to_string(h[j]) + " is not a token id");
      }
      hist[i] = h.Data();
      hist_len[i] = static_cast<int32_t>(h.ElementLength());
    }
    b.sample(static_cast<int>(n), logits.Data(), sp.data(), rng.Data(), hist.data(), hist_len.data(), out.Data());
    return info.Env().Undefined();
  });
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (busy_) backend("dispose");  // throws the busy error
    backend_.reset();
    kv_slots_ = 0;
    return info.Env().Undefined();
  });
}

// ---- data parallelism: the job's ranks (core/collective.h) ----

// Waits for every rank off the event loop, so that signals (a second Ctrl-C) are still handled meanwhile.
class BarrierJob : public Napi::AsyncWorker {
 public:
  BarrierJob(Napi::Env env, dixie::Collective& group, bool timed) : Napi::AsyncWorker(env), group_(group), timed_(timed), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      group_.barrier(timed_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  dixie::Collective& group_;
  bool timed_;
  Napi::Promise::Deferred deferred_;
};

// The launcher that started this process ("Open MPI's mpirun"...), or null when none did.
Napi::Value MpiLauncher(const Napi::CallbackInfo& info) {
  std::string launcher;
  if (!dixie::launched_by_mpi(&launcher)) return info.Env().Null();
  return Napi::String::New(info.Env(), launcher);
}

// Initialises MPI (once) and returns the job's ranks: rank, size, localSize, library, and the calls
// of lib/train/distributed.ts.
Napi::Value InitDistributed(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    dixie::Collective& group = dixie::init_process_collective();
    Napi::Object o = Napi::Object::New(env);
    o.Set("rank", group.rank());
    o.Set("size", group.size());
    o.Set("localSize", group.local_size());
    o.Set("library", group.library());
    const auto method = [&](const char* name, std::function<Napi::Value(const Napi::CallbackInfo&)> body) {
      o.Set(name, Napi::Function::New(env, [body](const Napi::CallbackInfo& i) { return guarded(i, [&] { return body(i); }); }, name));
    };
    dixie::Collective* g = &group;
    method("allreduceSum", [g](const Napi::CallbackInfo& i) -> Napi::Value {
      Napi::Float64Array a = typed_arg<double>(i[0], napi_float64_array, "Float64Array", "allreduceSum: data");
      g->allreduce_sum(a.Data(), a.ElementLength());
      return i.Env().Undefined();
    });
    method("broadcast", [g](const Napi::CallbackInfo& i) -> Napi::Value {
      Napi::Uint8Array a = typed_arg<uint8_t>(i[0], napi_uint8_array, "Uint8Array", "broadcast: data");
      const int root = static_cast<int>(int_arg(i[1], "broadcast: root", 0, g->size() - 1));
      g->broadcast(a.Data(), a.ElementLength(), root);
      return i.Env().Undefined();
    });
    method("barrier", [g](const Napi::CallbackInfo& i) -> Napi::Value {
      if (!i[0].IsBoolean()) throw std::invalid_argument("barrier: timed must be a boolean");
      BarrierJob* job = new BarrierJob(i.Env(), *g, i[0].As<Napi::Boolean>().Value());
      Napi::Promise promise = job->promise();
      job->Queue();
      return promise;
    });
    method("setTimeout", [g](const Napi::CallbackInfo& i) -> Napi::Value {
      const double seconds = number_arg(i[0], "setTimeout: seconds");
      if (!(seconds >= 0)) throw std::invalid_argument("setTimeout: seconds must be >= 0");
      g->set_timeout(seconds);
      return i.Env().Undefined();
    });
    method("reduceSeconds", [g](const Napi::CallbackInfo& i) -> Napi::Value { return Napi::Number::New(i.Env(), g->reduce_seconds()); });
    method("finalize", [g](const Napi::CallbackInfo& i) -> Napi::Value {
      g->finalize();
      return i.Env().Undefined();
    });
    method("abort", [g](const Napi::CallbackInfo& i) -> Napi::Value {
      std::fflush(stderr);
      g->abort(static_cast<int>(int_arg(i[0], "abort: code", 0, 255)));
      __builtin_unreachable();  // the virtual call hides abort's [[noreturn]] from the compiler
    });
    return o;
  });
}

// ---- GGUF export: ggml's quantized blocks (core/ggml_quantize.h) ----

// Quantizes off the event loop, into a Uint8Array made before the work starts; it holds both arrays meanwhile.
class QuantizeJob : public Napi::AsyncWorker {
 public:
  QuantizeJob(Napi::Env env, const dixie::GgmlBlockType& type, Napi::Float32Array values, int threads)
      : Napi::AsyncWorker(env), type_(type), threads_(threads), deferred_(Napi::Promise::Deferred::New(env)) {
    const size_t n = values.ElementLength();
    Napi::Uint8Array out = Napi::Uint8Array::New(env, n / type.block * type.bytes);
    values_ = Napi::Persistent(values.As<Napi::Object>());
    out_ = Napi::Persistent(out.As<Napi::Object>());
    x_ = values.Data();
    n_ = n;
    dst_ = out.Data();
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { dixie::ggml_quantize(type_, x_, n_, dst_, threads_); }
  void OnOK() override { deferred_.Resolve(out_.Value()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  const dixie::GgmlBlockType& type_;
  int threads_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference values_, out_;
  const float* x_ = nullptr;
  size_t n_ = 0;
  uint8_t* dst_ = nullptr;
};

// quantizeGgml(type, values, threads): a promise of `values` (a whole number of the type's blocks) as ggml blocks.
Napi::Value QuantizeGgml(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    const dixie::GgmlBlockType* type = dixie::ggml_block_type(name);
    if (!type) throw ArgError("quantizeGgml: type must be one of " + dixie::ggml_block_type_names() + ", got \"" + name + "\"");
    Napi::Float32Array values = f32_arg(info[1], "quantizeGgml: values");
    if (values.ElementLength() % type->block != 0) {
      throw ArgError("quantizeGgml: " + std::to_string(values.ElementLength()) + " values are no whole number of " + name +
                     " blocks of " + std::to_string(type->block));
    }
    const int threads = static_cast<int>(int_arg(info[2], "quantizeGgml: threads", 1, 1024));
    QuantizeJob* job = new QuantizeJob(info.Env(), *type, values, threads);
    Napi::Promise promise = job->promise();
    job->Queue();
    return promise;
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mpiLauncher", Napi::Function::New(env, MpiLauncher));
  exports.Set("initDistributed", Napi::Function::New(env, InitDistributed));
  exports.Set("Model", ModelWrap::Define(env));
  exports.Set("quantizeGgml", Napi::Function::New(env, QuantizeGgml));
  exports.Set("cpuFeatures", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                const std::vector<std::string> f = cpu_features();
                Napi::Array a = Napi::Array::New(info.Env(), f.size());
                for (size_t i = 0; i < f.size(); ++i) a.Set(i, f[i]);
                return a;
              }));
  // planDecodeMemory(config, weightDtype, slots, threads): {params, kvCache, activations} in bytes, what a CPU model
  // takes to decode `slots` sequences at their full context (core/backend.h plan_decode_memory), without allocating.
  exports.Set("planDecodeMemory", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return guarded(info, [&]() -> Napi::Value {
                  const dixie::GPT2Config c = config_arg(info[0]);
                  const DType dtype = dtype_from(info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "", "planDecodeMemory: weightDtype", true);
                  const int slots = static_cast<int>(int_arg(info[2], "planDecodeMemory: slots", 1, 1 << 20));
                  const int threads = static_cast<int>(int_arg(info[3], "planDecodeMemory: threads", 1, 1024));
                  const dixie::MemoryReport r = dixie::plan_decode_memory(c, dtype, slots, threads);
                  Napi::Object o = Napi::Object::New(info.Env());
                  o.Set("params", static_cast<double>(r.params));
                  o.Set("kvCache", static_cast<double>(r.kv_cache));
                  o.Set("activations", static_cast<double>(r.activations));
                  return o;
                });
              }));
  // checkSampling(params, vocabSize): null when the sampler accepts the settings, else {field, rule}.
  exports.Set("checkSampling", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return guarded(info, [&]() -> Napi::Value {
                  const dixie::SamplingParams sp = sampling_arg(info[0], "checkSampling: params");
                  const auto refused = dixie::refuse_sampling(sp, static_cast<int>(int_arg(info[1], "checkSampling: vocabSize", 1, 1 << 30)));
                  if (!refused) return info.Env().Null();
                  Napi::Object o = Napi::Object::New(info.Env());
                  o.Set("field", refused->field);
                  o.Set("rule", refused->rule);
                  return o;
                });
              }));
  // tokenLogprobs(logits, logprobs): kvForward's logprobs (core/backend.h token_logprobs) of rows of logits JavaScript
  // holds, one row per target, here on the event loop.
  exports.Set("tokenLogprobs", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return guarded(info, [&]() -> Napi::Value {
                  Napi::Float32Array logits = f32_arg(info[0], "tokenLogprobs: logits");
                  std::vector<Napi::Value> keep;
                  const LogprobArg arg = logprob_arg(info[1], keep);
                  if (!arg.given) throw ArgError("tokenLogprobs: logprobs must be an object");
                  const size_t rows = arg.targets.IsTypedArray() ? arg.targets.As<Napi::TypedArray>().ElementLength() : 0;
                  if (rows == 0 || logits.ElementLength() % rows != 0 || logits.ElementLength() / rows > (1u << 30))
                    throw ArgError("tokenLogprobs: logprobs.targets must give one token per row of logits");
                  const int V = static_cast<int>(logits.ElementLength() / rows);
                  const auto lp = logprob_rows(arg, rows, V, nullptr, "tokenLogprobs: logprobs");
                  dixie::token_logprobs(logits.Data(), static_cast<int>(rows), V, lp->rows);
                  return info.Env().Undefined();
                });
              }));
  // The largest rank kvAddAdapter takes, for the TypeScript side to refuse a higher one where it reads the adapter.
  exports.Set("maxServedRank", Napi::Number::New(env, dixie::kMaxServedRank));
  exports.Set("cudaAvailable", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
#ifdef DIXIE_WITH_CUDA
                return Napi::Boolean::New(info.Env(), cuda_status().usable);
#else
                return Napi::Boolean::New(info.Env(), false);
#endif
              }));
  return exports;
}

}  // namespace

NODE_API_MODULE(dixie_native, Init)
