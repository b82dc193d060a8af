// C++ as a console tool uses it, built the default way (g++, with libgcc and
// libstdc++ static, so only msvcrt and kernel32 are imported): exceptions
// through destructors, rethrow and catch-all, the standard containers and
// algorithms, iostream formatting and string streams.
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

struct Noisy {
  std::string name;
  explicit Noisy(std::string n) : name(std::move(n)) { std::cout << "  make " << name << "\n"; }
  ~Noisy() { std::cout << "  drop " << name << "\n"; }
};

struct AppError : std::runtime_error {
  int code;
  AppError(const std::string &what, int c) : std::runtime_error(what), code(c) {}
};

static int deep(int depth) {
  Noisy guard("level " + std::to_string(depth));
  if (depth == 0) throw AppError("bottom reached", 42);
  return deep(depth - 1) + 1;
}

static void rethrows() {
  try {
    deep(2);
  } catch (const AppError &e) {
    std::cout << "  rethrowing " << e.what() << "\n";
    throw;
  }
}

int main(int argc, char **argv) {
  std::cout << "exceptions:\n";
  try {
    rethrows();
  } catch (const AppError &e) {
    std::cout << "caught " << e.what() << " code " << e.code << "\n";
  }
  try {
    std::vector<int> v(3);
    v.at(10) = 1;
  } catch (const std::out_of_range &) {
    std::cout << "caught out_of_range\n";
  }
  try {
    throw 7;
  } catch (...) {
    std::cout << "caught something\n";
  }
  try {
    auto p = std::make_unique<Noisy>("owned");
    throw std::logic_error("with an owner");
  } catch (const std::exception &e) {
    std::cout << "caught " << e.what() << "\n";
  }

  std::vector<std::string> words = {"pear", "apple", "fig", "banana", "cherry"};
  std::sort(words.begin(), words.end());
  std::map<std::string, size_t> lengths;
  for (const auto &w : words) lengths[w] = w.size();
  std::cout << "sorted:";
  for (const auto &w : words) std::cout << ' ' << w;
  std::cout << "\nlengths:";
  for (const auto &[w, n] : lengths) std::cout << ' ' << w << '=' << n;
  std::vector<int> numbers(10);
  std::iota(numbers.begin(), numbers.end(), 1);
  std::cout << "\nsum " << std::accumulate(numbers.begin(), numbers.end(), 0) << ", evens "
            << std::count_if(numbers.begin(), numbers.end(), [](int n) { return n % 2 == 0; }) << "\n";

  std::ostringstream out;
  out << std::hex << 255 << ' ' << std::dec << std::setw(6) << std::setfill('*') << 42 << ' ' << std::fixed
      << std::setprecision(3) << 3.14159 << ' ' << std::scientific << 12345.678;
  std::cout << "formatted: " << out.str() << "\n";
  std::istringstream in("17 2.5 word");
  int i;
  double d;
  std::string s;
  in >> i >> d >> s;
  std::cout << "parsed: " << i << ' ' << d << ' ' << s << "\n";
  std::cout << "args:";
  for (int a = 1; a < argc; a++) std::cout << " [" << argv[a] << "]";
  std::cout << std::endl;
  return 0;
}
