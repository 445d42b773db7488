// report.html: encoding helpers, and a page from a partial run folder.
#include "aefx/viz/report.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "aefx/engine/run_folder.h"
#include "test_util.h"

namespace aefx::viz {
namespace {

TEST(Report, Base64AndHtmlEscape) {
  // RFC 4648 test vectors.
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64(std::string("\xff\x00\x80", 3)), "/wCA");
  EXPECT_EQ(html_escape("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;");
}

TEST(Report, PartialRunFolderSaysWhatIsMissing) {
  testing::TempDir dir;
  EXPECT_THROW(write_report(dir.path()), std::runtime_error) << "no config.yaml";
  testing::write_bytes(dir / "config.yaml", "name: partial <run>\nseed: 0\n");
  testing::write_bytes(dir / "progress.json",
                       "{\"completed\": [\"pretrain\"], \"unfinished\": \"classify\", "
                       "\"stopped_by\": \"SIGINT\"}\n");
  const auto file = write_report(dir.path());
  EXPECT_EQ(file, engine::RunFolder(dir.path()).report());
  const std::string html = testing::read_file(file);
  EXPECT_NE(html.find("<title>aefx run partial &lt;run&gt;</title>"), std::string::npos);
  EXPECT_NE(html.find("No test metrics yet"), std::string::npos);
  EXPECT_EQ(html.find("raw-pixel baseline"), std::string::npos) << "no baseline ran";
  EXPECT_EQ(html.find("test reconstruction PSNR"), std::string::npos);
  EXPECT_NE(html.find("curves.png is not there"), std::string::npos);
  EXPECT_NE(html.find("<b>classify</b> did not finish (SIGINT)"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("http"), std::string::npos) << "nothing is fetched";
  // A damaged summary file is named.
  testing::write_bytes(dir / "metrics.json", "{\"test_accuracy\": [");
  try {
    write_report(dir.path());
    FAIL() << "expected a parse error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace aefx::viz
